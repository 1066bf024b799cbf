// The daemon's housekeeping loop: what HousekeepingSchedule says is due (housekeeping.h) runs off
// the I/O threads, and what a pass did goes to the log and the metrics; and the store's health
// as /readyz reports it.

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

namespace {

// Clears a job's busy flag when the job ends, however it ends.
struct BusyUntilDone {
  std::atomic<bool>& flag;
  ~BusyUntilDone() { flag = false; }
};

}  // namespace

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
  report_kept_escalations(now ? escalation_backlog_->retry_now(*g.escalator)
                              : escalation_backlog_->retry(*g.escalator));
}

void DaemonCore::report_kept_escalations(const EscalationBacklog::Pass& pass) {
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

void DaemonCore::report_store_pass(const StorePassReport& report) {
  report_kept_escalations(report.kept_escalations);
  if (!report.sla_error.empty()) log("error", "SLA check failed: " + report.sla_error);
  for (const EscalationRecord& r : report.sla_breaches) {
    log("warn",
        "SLA breached: " + r.display_id() + " re-escalated to " + std::string(to_string(r.level)));
    m_.escalations->with({std::string(to_string(r.level))}).inc();
  }
  auto& family = *m_.notifications;
  if (report.delivery.delivered) family.with({"delivered"}).inc(report.delivery.delivered);
  if (report.delivery.retry_scheduled) {
    family.with({"retry"}).inc(report.delivery.retry_scheduled);
  }
  if (report.delivery.dead) family.with({"dead"}).inc(report.delivery.dead);
  if (report.delivery.lease_lost) {
    // Another node claimed these messages after this node's lease had expired.
    log("warn", std::to_string(report.delivery.lease_lost) +
                    " notification completion(s) found their lease taken by another node");
    family.with({"lease_lost"}).inc(report.delivery.lease_lost);
  }
}

net::awaitable<void> DaemonCore::housekeeping_loop() {
  LoopGuard guard(loops_running_);
  auto executor = co_await net::this_coro::executor;
  net::steady_timer timer(executor);
  HousekeepingSchedule schedule;
  while (!loops_stop_.load()) {
    std::shared_ptr<Generation> g = current();
    HousekeepingIntervals intervals;
    if (g) {
      intervals.delivery = g->config.escalation.delivery_interval;
      intervals.sla_check = g->config.escalation.sla_check_interval;
    }
    const HousekeepingSchedule::Due due =
        schedule.take_due(clock_.now(), intervals, !housekeeping_busy_ && g, !memory_busy_);
    if (due.store_pass()) {
      housekeeping_busy_ = true;
      // Store and receivers block: their pass runs on the blocking pool.
      net::post(*blocking_, [this, g, due] {
        BusyUntilDone done{housekeeping_busy_};
        try {
          report_store_pass(run_store_pass({.backlog = *escalation_backlog_,
                                            .escalator = *g->escalator,
                                            .dispatcher = *g->dispatcher,
                                            .store = *store_,
                                            .tasks_retained = boot_config_.tasks.retained},
                                           due.deliver, due.check_slas));
        } catch (const std::exception& e) {
          // The store failed (disk full, locked): the next pass tries again.
          log("error", std::string("notification or SLA pass failed: ") + e.what());
        }
      });
    }
    // Self-healing for memory can take a minute (restart, wait for ready): a job of its own,
    // so that notifications and SLA checks do not wait for it.
    if (due.watch_memory) {
      memory_busy_ = true;
      net::post(*blocking_, [this] {
        BusyUntilDone done{memory_busy_};
        try {
          check_memory();
        } catch (const std::exception& e) {
          log("error", std::string("memory watch failed: ") + e.what());
        }
      });
    }
    if (due.heartbeat) events_.heartbeat();
    timer.expires_after(kProbeTick);
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  // Let a delivery pass in progress finish before shutdown goes on.
  while (housekeeping_busy_) {
    timer.expires_after(std::chrono::milliseconds(10));
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

}  // namespace mend::server_detail
