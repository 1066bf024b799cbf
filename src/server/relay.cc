// The relay (relay.h): starting and stopping its workers, and the routes it passes requests
// along. The workers are in relay_worker.cc, the client connections in relay_connection.cc,
// relay_exchange.cc and relay_answer.cc, the HTTP framing in relay_framing.cc.
#include "relay.h"

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mend/runtime/http_client.h"
#include "relay_internal.h"

namespace mend::server_detail {

// --- Relay ---------------------------------------------------------------------------------------

Relay::Relay(DaemonCore& core, RelayOptions options) : core_(core), options_(std::move(options)) {}

Relay::~Relay() {
  stop(Duration::zero());
}

Result<void> Relay::start() {
  const std::size_t threads = std::max<std::size_t>(options_.threads, 1);
  error_code ec;
  const auto address = net::ip::make_address(options_.address, ec);
  if (ec) {
    return Error::of_kind("configuration",
                          "relay for " + options_.agent + ": bad address " + options_.address);
  }
  unsigned short port = options_.port;
  auto cannot_listen = [&] {
    return Error::of_kind("configuration", "relay for " + options_.agent + ": cannot listen on " +
                                               options_.address + ":" + std::to_string(port) +
                                               ": " + ec.message());
  };
  {
    // Claimed first without SO_REUSEPORT: a port another process holds, even one that set
    // SO_REUSEPORT itself (a second mend), is an error here, not a silent share of the traffic.
    net::io_context probe_io;
    tcp::acceptor probe(probe_io);
    const tcp::endpoint endpoint(address, port);
    probe.open(endpoint.protocol(), ec);
    // SO_REUSEADDR, as every listener: connections of a previous run in TIME_WAIT must not
    // keep a restarted mend from its port. A listening socket still does.
    if (!ec) probe.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) probe.bind(endpoint, ec);
    if (ec) return cannot_listen();
    port = probe.local_endpoint().port();
  }
  for (std::size_t i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>(*this, i);
    const tcp::endpoint endpoint(address, port);
    w->acceptor.open(endpoint.protocol(), ec);
    if (!ec) w->acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) {
      // Every worker listens on the same port; the kernel spreads the connections.
      const int on = 1;
      if (::setsockopt(w->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) !=
          0) {
        ec = error_code(errno, boost::system::system_category());
      }
    }
    if (!ec) w->acceptor.bind(endpoint, ec);
    if (!ec) w->acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      workers_.clear();
      return cannot_listen();
    }
    port = w->acceptor.local_endpoint().port();
    workers_.push_back(std::move(w));
  }
  bound_port_ = port;
  for (auto& w : workers_) {
    w->accept();
    w->arm_sweep();
    Worker* worker = w.get();
    w->thread = std::thread([this, worker] {
      for (;;) {
        try {
          worker->io.run();
          return;
        } catch (const std::exception& e) {
          core_.log("error", "relay for " + options_.agent + ": unexpected exception: " + e.what());
        }
      }
    });
  }
  return {};
}

std::string Relay::base_url() const {
  const bool v6 = options_.address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + options_.address + "]" : options_.address) + ":" +
         std::to_string(bound_port_);
}

void Relay::stop_accepting() {
  for (auto& w : workers_) {
    Worker* worker = w.get();
    if (!worker->accepting.exchange(false)) continue;
    net::post(worker->io, [worker] {
      error_code ignored;
      worker->acceptor.close(ignored);
      const std::vector<Connection*> open = worker->connections;
      for (Connection* c : open) c->close_if_idle();
      for (auto& pool : worker->idle) pool.clear();
    });
  }
}

void Relay::stop(Duration drain) {
  if (workers_.empty()) return;
  stop_accepting();
  // Real sleeps below: measured by the clock they really take, not the daemon's.
  const TimePoint until = SystemClock::instance().now() + drain;
  auto busy = [this] {
    for (auto& w : workers_) {
      if (w->active.load(std::memory_order_relaxed) > 0) return true;
    }
    return false;
  };
  for (int i = 0; i < 100000 && busy() && SystemClock::instance().now() < until; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& w : workers_) {
    Worker* worker = w.get();
    net::post(worker->io, [worker] {
      error_code ignored;
      worker->stopping = true;
      worker->sweep.cancel();
      worker->accept_pause.cancel();
      const std::vector<Connection*> open = worker->connections;
      for (Connection* c : open) c->close();
      worker->flush();
    });
  }
  for (auto& w : workers_) {
    // The closes above let every handler end; stop() covers a handler that does not.
    for (int i = 0; i < 300 && w->open.load() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
    w->flush();  // what the last requests counted (the thread has ended: no race)
  }
  workers_.clear();
}

// --- Routes --------------------------------------------------------------------------------------

std::shared_ptr<const RelayRoute> build_relay_route(DaemonCore& core, Generation& g,
                                                    const std::string& agent, int max_agents) {
  auto route = std::make_shared<RelayRoute>();
  std::vector<Candidate> plan = g.agents.plan(agent, {});
  if (max_agents > 0 && plan.size() > static_cast<std::size_t>(max_agents)) plan.resize(max_agents);
  for (const Candidate& c : plan) {
    AgentRegistry::Entry* entry = g.agents.find(c.agent);
    if (entry == nullptr) continue;
    RelayTarget t;
    t.agent = c.agent;
    t.entry = entry;
    t.retry = &g.workflow->retry_options_for(c.agent);
    t.policy = &g.workflow->retry_policy_for(c.agent);
    t.counters = &core.counters(c.agent);
    for (const std::string& url : entry->info.endpoints) {
      Result<UrlParts> parts = parse_url(url);
      if (!parts.ok()) {
        t.unusable = parts.error().message;
        continue;
      }
      if (parts->scheme != "http") {
        t.unusable =
            "the relay reaches agents over plain HTTP only; " + url + " is " + parts->scheme;
        continue;
      }
      net::io_context io;
      tcp::resolver resolver(io);
      error_code ec;
      auto results = resolver.resolve(parts->host, parts->port, ec);
      if (ec || results.empty()) {
        t.unusable = "cannot resolve " + parts->host + ": " + ec.message();
        continue;
      }
      t.endpoints.push_back(results.begin()->endpoint());
      std::string base = parts->target.substr(0, parts->target.find_first_of("?#"));
      while (!base.empty() && base.back() == '/') base.pop_back();
      t.base_paths.push_back(std::move(base));
    }
    if (!t.unusable.empty()) {
      core.log("warn", "relay for " + agent + ": agent " + c.agent +
                           (t.endpoints.empty() ? " is skipped: " : " has a replica skipped: ") +
                           t.unusable);
    }
    t.balanced = t.unusable.empty() &&
                 t.endpoints.size() == static_cast<std::size_t>(entry->balancer.replicas());
    if (t.balanced && t.endpoints.size() >= 2) t.hedging = entry->hedging.get();
    route->chain.push_back(std::move(t));
  }
  if (g.agents.find(agent) == nullptr) {
    core.log("warn", "relay for " + agent + ": the agent is not in the configuration any more; " +
                         "its requests go to the other candidates, or get the degraded answer");
  }
  return route;
}

}  // namespace mend::server_detail
