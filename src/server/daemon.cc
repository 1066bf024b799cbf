// The daemon's lifecycle (mend/server/daemon.h): construction, start, signals, the drain and
// shutdown.
#include "mend/server/daemon.h"

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "daemon_impl.h"
#include "mend/runtime/async_workflow.h"
#include "mend/store/pg_store.h"
#include "mend/store/sqlite_store.h"
#include "relay.h"

namespace mend {
namespace server_detail {

namespace net = boost::asio;
using nlohmann::json;

std::string format_seconds(Duration d) {
  return fmt::format("{:g} s", seconds(d));
}

// --- Construction and configuration ----------------------------------------------------------

DaemonCore::DaemonCore(Config config, DaemonOptions options)
    : boot_config_(std::move(config)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : SystemClock::instance()),
      random_(options_.random != nullptr ? *options_.random : SeededRandom::system()),
      tasks_(clock_, {boot_config_.server.max_tasks_in_flight, boot_config_.tasks.retained}) {
  register_metrics();
  register_routes();
}

DaemonCore::~DaemonCore() {
  stop();
  bool running = false;
  {
    MutexLock lock(state_mu_);
    running = started_ && !finished_;
  }
  if (running) wait();
}

void DaemonCore::log(std::string_view level, const std::string& line) {
  if (options_.log) {
    options_.log(level, line);
    return;
  }
  if (level == "error") {
    spdlog::error("{}", line);
  } else if (level == "warn") {
    spdlog::warn("{}", line);
  } else {
    spdlog::info("{}", line);
  }
}

void DaemonCore::publish(const std::string& kind, const std::string& body) {
  events_.publish(kind, body);
}

AgentCounters& DaemonCore::counters(const std::string& agent) {
  MutexLock lock(counters_mu_);
  auto& slot = counters_[agent];
  if (!slot) slot = std::make_unique<AgentCounters>();
  return *slot;
}

void DaemonCore::set_generation(std::shared_ptr<Generation> g) {
  Generation& installed = *g;
  {
    MutexLock lock(generation_mu_);
    previous_generation_ = generation_;
    generation_ = std::move(g);
    generation_number_.fetch_add(1, std::memory_order_release);
  }
  // After it is current: a probe's word from now on reaches its balancers (replica_readiness),
  // and what the probes said before is read here.
  sync_readiness(installed);
}

std::shared_ptr<Generation> DaemonCore::current() const {
  MutexLock lock(generation_mu_);
  return generation_;
}

int DaemonCore::balanced_calls_out(const std::string& agent) const {
  std::shared_ptr<Generation> now;
  std::shared_ptr<Generation> before;
  {
    MutexLock lock(generation_mu_);
    now = generation_;
    before = previous_generation_.lock();
  }
  const TimePoint at = clock_.now();
  int out = 0;
  for (const Generation* g : {now.get(), before.get()}) {
    const AgentRegistry::Entry* entry = g != nullptr ? g->agents.find(agent) : nullptr;
    if (entry == nullptr) continue;
    for (const ReplicaSnapshot& r : entry->balancer.snapshot(at)) out += r.outstanding;
  }
  return out;
}

std::string DaemonCore::base_url() const {
  return server_ ? server_->base_url() : std::string();
}

// --- Lifecycle -------------------------------------------------------------------------------

Result<void> DaemonCore::start() {
  {
    MutexLock lock(state_mu_);
    if (started_) return Error::of_kind("configuration", "the daemon was started already");
    started_ = true;
  }
  const Config& config = boot_config_;
  const std::size_t threads = std::max<std::size_t>(config.server.threads, 1);
  io_ = std::make_unique<net::io_context>(static_cast<int>(threads));
  work_.emplace(io_->get_executor());
  blocking_ = std::make_unique<net::thread_pool>(4);
  HttpClientOptions client;
  client.max_idle_per_host = 64;
  http_ = std::make_unique<HttpClient>(io_->get_executor(), client);
  for (std::size_t i = 0; i < threads; ++i) {
    io_threads_.emplace_back([this] {
      for (;;) {
        try {
          io_->run();
          return;
        } catch (const std::exception& e) {
          log("error", std::string("unexpected exception on an I/O thread: ") + e.what());
        }
      }
    });
  }

  const auto busy_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.store.busy_timeout);
  if (!config.store.url.empty()) {
    Result<std::unique_ptr<PgStore>> store =
        PgStore::open(config.store.url, PgOptions{.acquire_timeout = busy_timeout});
    if (!store.ok()) return store.error();
    store_ = std::move(*store);
  } else {
    Result<std::unique_ptr<SqliteStore>> store =
        SqliteStore::open(config.store.path, SqliteOptions{.busy_timeout = busy_timeout});
    if (!store.ok()) return store.error();
    store_ = std::move(*store);
  }
  TaskWriter::Options writer;
  writer.on_health_change = [this](bool failing, const std::string& error) {
    task_writes_failing_.store(failing);
    on_store_health(error);
  };
  EscalationBacklog::Options backlog;
  backlog.on_health_change = [this](bool failing, const std::string& error) {
    escalation_writes_failing_.store(failing);
    on_store_health(error);
  };
  escalation_backlog_ = std::make_unique<EscalationBacklog>(clock_, backlog);
  task_writer_ = std::make_unique<TaskWriter>(*store_, clock_, writer);
  std::vector<std::pair<std::string, Task>> resumed;
  if (auto recovered = recover_tasks(config, &resumed); !recovered.ok()) return recovered;

  CrashLoopOptions crash;
  crash.initial = config.supervision.restart_backoff_initial;
  crash.max = config.supervision.restart_backoff_max;
  crash.reset_after = config.supervision.restart_backoff_reset;
  crash.intensity_max_restarts = config.supervision.intensity_max_restarts;
  crash.intensity_period = config.supervision.intensity_period;
  supervisor_ = std::make_unique<ProcessSupervisor>(
      crash,
      [this](const std::string& name, bool is_stderr, std::string_view line) {
        log(is_stderr ? "warn" : "info", "[" + name + "] " + std::string(line));
        if (says_port_in_use(line)) replicas_.port_in_use(name);
      },
      [this](const ProcessEvent& event) { on_process_event(event); });

  if (auto started = start_replicas(config, /*first=*/true); !started.ok()) return started;
  Result<std::shared_ptr<Generation>> g = build(config);
  if (!g.ok()) return g.error();
  set_generation(*g);
  replicas_.report_health();

  if (options_.handle_signals) {
    // Before the API listens: whoever learns the address may signal at once.
    signals_ = std::make_unique<net::signal_set>(*io_, SIGTERM, SIGINT, SIGHUP);
    arm_signals();
  }

  HttpServerOptions server;
  server.bind_address = config.server.address;
  server.port = config.server.port;
  server.max_body_bytes = config.server.max_body_bytes;
  server.read_timeout = config.server.read_timeout;
  server.max_connections = config.server.max_connections;
  server.max_connections_per_client = config.server.max_connections_per_client;
  server.threads = threads;
  server.screen = [this](const HttpRequest& head) { return screen(head); };
  server.reserved_paths = {"/healthz", "/readyz"};
  server_ = std::make_unique<HttpServer>(
      server, HttpServer::AsyncHandler(
                  [this](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
                    handle(std::move(request), std::move(responder));
                  }));
  if (auto listening = server_->start(); !listening.ok()) return listening.error();

  for (std::size_t i = 0; i < config.relays.size(); ++i) {
    const RelayConfig& rc = config.relays[i];
    RelayOptions ro;
    ro.index = i;
    ro.agent = rc.agent;
    ro.address = rc.address;
    ro.port = rc.port;
    ro.threads = rc.threads > 0 ? rc.threads : threads;
    ro.max_connections = config.server.max_connections;
    ro.max_connections_per_client = config.server.max_connections_per_client;
    ro.max_request_bytes = config.server.max_body_bytes;
    ro.max_response_bytes = rc.max_response_bytes;
    ro.pass_admin = rc.pass_admin;
    ro.idle_timeout = config.server.read_timeout;
    auto relay = std::make_unique<Relay>(*this, ro);
    if (auto listening = relay->start(); !listening.ok()) return listening.error();
    log("info", "relay for " + rc.agent + " on " + relay->base_url());
    relays_.push_back(std::move(relay));
  }

  net::co_spawn(*io_, probe_loop(), net::detached);
  net::co_spawn(*io_, housekeeping_loop(), net::detached);
  if (!resumed.empty()) net::co_spawn(*io_, resume_tasks(std::move(resumed)), net::detached);
  log("info", "mend serving on " + server_->base_url() + " with " +
                  std::to_string(config.agents.size()) + " agents");
  return {};
}

void DaemonCore::stop() {
  MutexLock lock(state_mu_);
  stop_requested_ = true;
  state_cv_.notify_all();
}

void DaemonCore::arm_signals() {
  signals_->async_wait([this](const boost::system::error_code& ec, int number) {
    if (ec) return;  // cancelled at shutdown
    if (number == SIGHUP) {
      log("info", "received SIGHUP: reloading the configuration");
      net::post(*blocking_, [this] {
        Result<void> r = detail::guarded([this] { return reload(""); });
        if (!r.ok()) log("error", "reload refused: " + r.error().message);
      });
      arm_signals();
      return;
    }
    log("info",
        std::string("received ") + (number == SIGTERM ? "SIGTERM" : "SIGINT") + ": shutting down");
    stop();
  });
}

int DaemonCore::wait() {
  {
    MutexLock lock(state_mu_);
    state_cv_.wait(lock.native(), [this]() MEND_REQUIRES(state_mu_) { return stop_requested_; });
    if (finished_) return exit_code_;
  }
  if (io_) shutdown();
  MutexLock lock(state_mu_);
  finished_ = true;
  return exit_code_;
}

void DaemonCore::shutdown() {
  stopping_.store(true);
  tasks_.stop_admitting();  // a submission either counts in flight before this, or is refused
  if (signals_) {
    // On the I/O threads, where the SIGHUP handler re-arms the set. From then on a second SIGTERM
    // or SIGINT has its default effect: it ends mend at once.
    net::post(*io_, [this] {
      boost::system::error_code ignored;
      signals_->cancel(ignored);
      signals_->clear(ignored);
    });
  }
  for (auto& relay : relays_) relay->stop_accepting();
  const Duration drain = boot_config_.server.drain_timeout;
  log("info", "draining " + std::to_string(tasks_.in_flight()) + " tasks in flight (up to " +
                  format_seconds(drain) + ")");
  if (std::size_t left = tasks_.wait_drained(drain); left > 0) {
    log("warn", std::to_string(left) + " tasks still in flight after the drain timeout");
  }
  // Probes, deliveries and SLA checks went on during the drain; now they end (bounded wait).
  loops_stop_.store(true);
  for (int i = 0; i < 300 && (loops_running_.load() > 0 || housekeeping_busy_.load()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Finish pending notifications: passes until nothing is due (bounded). No housekeeping pass
  // runs any more, so no message goes out twice.
  if (std::shared_ptr<Generation> g = current()) {
    const TimePoint until = clock_.now() + std::chrono::seconds(10);
    for (int pass = 0; pass < 100 && clock_.now() < until; ++pass) {
      DeliveryReport report;
      try {
        report = g->dispatcher->deliver_due();
      } catch (const std::exception& e) {
        log("error", std::string("last notification pass failed: ") + e.what());
        break;
      }
      if (report.delivered + report.retry_scheduled + report.held_back == 0) break;
      if (report.delivered == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  // Let the answers to drained tasks reach their clients before the connections close.
  for (int i = 0; i < 200; ++i) {
    MutexLock lock(answered_mu_);
    std::erase_if(answered_, [](const std::shared_ptr<HttpResponder>& r) { return r->closed(); });
    if (answered_.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The event streams end with their last chunk before the server closes the connections, so
  // that a follower can tell mend stopping from mend dying (up to 1 s for slow readers).
  std::vector<std::shared_ptr<HttpResponder>> streams = events_.close_all();
  for (int i = 0; i < 100; ++i) {
    std::erase_if(streams, [](const std::shared_ptr<HttpResponder>& r) { return r->closed(); });
    if (streams.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Relayed requests still in flight get the drain time again at most (they are bounded by
  // their agents' call timeouts).
  for (auto& relay : relays_) relay->stop(drain);
  relays_.clear();
  if (server_) server_->stop();
  // Agents stop in reverse order of start. Whatever still runs on the pools (a self-healing
  // step of a task that outlived the drain) finds supervision closed and restarts nothing; the
  // supervisor object itself lives until every thread is joined, and its destructor stops
  // anything started meanwhile.
  supervision_closed_.store(true);
  if (supervisor_) supervisor_->stop_all();
  work_.reset();
  if (blocking_) blocking_->join();
  io_->stop();
  for (std::thread& t : io_threads_) t.join();
  io_threads_.clear();
  signals_.reset();
  supervisor_.reset();
  if (std::shared_ptr<Generation> g = current(); g && escalation_backlog_) {
    // One last try for escalations kept while the store refused writes; what is left is said.
    retry_escalations(*g, true);
    const EscalationBacklog::Stats s = escalation_backlog_->stats();
    if (s.pending_occurrences > 0 || s.dropped > 0) {
      log("error", std::to_string(s.pending_occurrences + s.dropped) +
                       " escalations could not be written to the store (" + s.last_error + ")");
    }
  }
  if (task_writer_) {
    // Every task has finished or was left running (it resumes at the next start): what the
    // writer still holds is tried before mend says it stopped.
    // Counted after the writer's last tries, so that the line says what is really lost.
    const TaskWriter::Health h = task_writer_->stop();
    const std::size_t lost = h.retry_pending + h.queued + static_cast<std::size_t>(h.dropped);
    if (lost > 0) {
      log("error", std::to_string(lost) + " changes of tasks could not be written to the store (" +
                       h.last_error + ")");
    }
  }
  log("info", "mend stopped");
}

}  // namespace server_detail

// --- The public face -------------------------------------------------------------------------

struct Daemon::Impl {
  Impl(Config config, DaemonOptions options) : core(std::move(config), std::move(options)) {}
  server_detail::DaemonCore core;
};

Daemon::Daemon(Config config, DaemonOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}
Daemon::~Daemon() = default;
Result<void> Daemon::start() {
  return impl_->core.start();
}
int Daemon::wait() {
  return impl_->core.wait();
}
void Daemon::stop() {
  impl_->core.stop();
}
Result<void> Daemon::reload(const std::string& path) {
  return impl_->core.reload(path);
}
std::string Daemon::base_url() const {
  return impl_->core.base_url();
}

}  // namespace mend
