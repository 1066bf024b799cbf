// The daemon's housekeeping: the store's health as /readyz reports it, escalations waiting for
// the store, SLA re-escalation and notification delivery, on a loop off the I/O threads.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "daemon_impl.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

void DaemonCore::on_store_health(const std::string& error) {
  MutexLock lock(store_health_mu_);
  const bool failing = task_writes_failing_.load() || escalation_writes_failing_.load();
  if (failing == store_failing_.load()) return;
  store_failing_.store(failing);
  if (failing) {
    log("error", "the store refuses writes (" + error +
                     "): tasks' changes and escalations are kept in memory and written again "
                     "until it takes them; new tasks are refused; /readyz says not ready");
  } else {
    log("info",
        "the store takes writes again; every kept change of a task and every kept escalation is "
        "written");
  }
  publish(failing ? "store_failing" : "store_recovered",
          json({{"kind", failing ? "store_failing" : "store_recovered"},
                {"at", to_iso8601(clock_.wall_now())},
                {"source", "store"},
                {"detail", error}})
              .dump(-1, ' ', false, json::error_handler_t::replace));
}

void DaemonCore::retry_escalations(Generation& g, bool now) {
  EscalationBacklog::Pass pass =
      now ? escalation_backlog_->retry_now(*g.escalator) : escalation_backlog_->retry(*g.escalator);
  if (pass.written == 0) return;
  std::string records;
  for (const EscalationTaken& t : pass.records) {
    m_.escalations->with({std::string(to_string(t.level))}).inc();
    if (!records.empty()) records += ", ";
    records += t.record + " (" + std::to_string(t.occurrences) + " occurrences)";
  }
  log("warn", "wrote " + std::to_string(pass.written) +
                  " escalations kept while the store refused writes: " + records);
}

void DaemonCore::check_slas(Generation& g) {
  Result<std::vector<EscalationRecord>> re = g.escalator->check_slas();
  if (!re.ok()) {
    log("error", "SLA check failed: " + re.error().message);
    return;
  }
  for (const EscalationRecord& r : *re) {
    log("warn",
        "SLA breached: " + r.display_id() + " re-escalated to " + std::string(to_string(r.level)));
    m_.escalations->with({std::string(to_string(r.level))}).inc();
  }
}

void DaemonCore::deliver_notifications(Generation& g) {
  DeliveryReport report = g.dispatcher->deliver_due();
  auto& family = *m_.notifications;
  if (report.delivered) family.with({"delivered"}).inc(report.delivered);
  if (report.retry_scheduled) family.with({"retry"}).inc(report.retry_scheduled);
  if (report.dead) family.with({"dead"}).inc(report.dead);
}

net::awaitable<void> DaemonCore::housekeeping_loop() {
  LoopGuard guard(loops_running_);
  auto executor = co_await net::this_coro::executor;
  net::steady_timer timer(executor);
  TimePoint next_delivery{};
  TimePoint next_sla{};
  TimePoint next_heartbeat{};
  TimePoint next_memory{};
  std::atomic<bool>& busy = housekeeping_busy_;
  while (!loops_stop_.load()) {
    std::shared_ptr<Generation> g = current();
    const TimePoint now = clock_.now();
    if (!busy && g) {
      bool deliver = now >= next_delivery;
      bool sla = now >= next_sla;
      if (deliver) next_delivery = now + g->config.escalation.delivery_interval;
      if (sla) next_sla = now + g->config.escalation.sla_check_interval;
      if (deliver || sla) {
        busy = true;
        // Store and receivers block: their pass runs on the blocking pool.
        net::post(*blocking_, [this, g, deliver, sla] {
          struct Done {
            std::atomic<bool>& flag;
            ~Done() { flag = false; }
          } done{housekeeping_busy_};
          try {
            if (deliver) retry_escalations(*g, false);
            if (sla) check_slas(*g);
            if (deliver) deliver_notifications(*g);
            // Finished tasks beyond tasks.retained leave the store as they leave memory.
            if (sla) store_->prune_tasks(boot_config_.tasks.retained);
          } catch (const std::exception& e) {
            // The store failed (disk full, locked): the next pass tries again.
            log("error", std::string("notification or SLA pass failed: ") + e.what());
          }
        });
      }
    }
    // Self-healing for memory can take a minute (restart, wait for ready): a job of its own,
    // so that notifications and SLA checks do not wait for it.
    if (!memory_busy_ && now >= next_memory) {
      next_memory = now + std::chrono::seconds(1);
      memory_busy_ = true;
      net::post(*blocking_, [this] {
        struct Done {
          std::atomic<bool>& flag;
          ~Done() { flag = false; }
        } done{memory_busy_};
        try {
          check_memory();
        } catch (const std::exception& e) {
          log("error", std::string("memory watch failed: ") + e.what());
        }
      });
    }
    if (now >= next_heartbeat) {
      events_.heartbeat();
      next_heartbeat = now + std::chrono::seconds(15);
    }
    timer.expires_after(kProbeTick);
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  // Let a delivery pass in progress finish before shutdown goes on.
  while (busy) {
    timer.expires_after(std::chrono::milliseconds(10));
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

}  // namespace mend::server_detail
