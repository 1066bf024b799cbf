// The daemon's housekeeping, as two parts that take what they work on instead of reaching into
// the daemon:
// - HousekeepingSchedule decides, on the clock it is given, which jobs are due: notification
//   delivery (with escalations kept while the store refused writes), the SLA check (with the
//   pruning of finished tasks), the event stream's heartbeat and the memory watch. Sans-IO.
// - run_store_pass() does one delivery and SLA pass over the store and says what it did; the
//   daemon logs and counts from that report.
//
//   mend::server_detail::HousekeepingSchedule schedule;
//   auto due = schedule.take_due(clock.now(), intervals, /*store_pass_free=*/true,
//                                /*memory_watch_free=*/true);
//   if (due.store_pass()) post([&] { report(run_store_pass(parts, due.deliver, due.check_slas));
//   });
//
// A job that is still running is not due again until it has finished, and its next time is
// counted from when it was last started: a slow store delays passes, it never queues them up.
//
// Thread-safety: HousekeepingSchedule is used by one loop at a time (no lock). run_store_pass()
// may run on any thread; the parts it is handed are each safe to share.
#ifndef MEND_SERVER_HOUSEKEEPING_H_
#define MEND_SERVER_HOUSEKEEPING_H_

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/store.h"
#include "mend/runtime/notifier.h"
#include "mend/store/escalation_backlog.h"
#include "mend/store/escalator.h"

namespace mend::server_detail {

struct HousekeepingIntervals {
  Duration delivery = std::chrono::seconds(1);      // escalation.delivery_interval
  Duration sla_check = std::chrono::seconds(10);    // escalation.sla_check_interval
  Duration heartbeat = std::chrono::seconds(15);    // a comment line on every event stream
  Duration memory_watch = std::chrono::seconds(1);  // supervised replicas' memory limits
};

class HousekeepingSchedule {
 public:
  struct Due {
    bool deliver = false;     // escalations kept in memory, then notifications
    bool check_slas = false;  // SLA re-escalation, then pruning of finished tasks
    bool heartbeat = false;
    bool watch_memory = false;
    // Delivery and the SLA check share one pass over the store.
    bool store_pass() const noexcept { return deliver || check_slas; }
  };

  // What is due at `now`. `store_pass_free`: no delivery/SLA pass is running and there is a
  // configuration to run it with; `memory_watch_free`: no memory watch is running. A job taken
  // as due is next due one interval after `now`.
  Due take_due(TimePoint now, const HousekeepingIntervals& intervals, bool store_pass_free,
               bool memory_watch_free);

 private:
  // The epoch: every job is due at the first look.
  TimePoint next_delivery_{};
  TimePoint next_sla_check_{};
  TimePoint next_heartbeat_{};
  TimePoint next_memory_watch_{};
};

// What one pass over the store works on.
struct StorePassParts {
  EscalationBacklog& backlog;
  Escalator& escalator;
  NotificationDispatcher& dispatcher;
  Store& store;
  std::size_t tasks_retained = 0;  // tasks.retained: finished tasks kept beyond this are pruned
};

struct StorePassReport {
  EscalationBacklog::Pass kept_escalations;    // written late; empty unless delivering
  std::vector<EscalationRecord> sla_breaches;  // re-escalated by this pass
  std::string sla_error;                       // the SLA check failed ("" when it did not)
  DeliveryReport delivery;
  std::size_t tasks_pruned = 0;
};

// Delivering: escalations kept while the store refused writes are written first (so that their
// notifications go out in this pass), then due notifications are delivered. Checking SLAs:
// breached records are re-escalated, and finished tasks beyond tasks_retained leave the store.
// Throws what the store throws (a full disk, a locked file): the next pass tries again.
StorePassReport run_store_pass(const StorePassParts& parts, bool deliver, bool check_slas);

}  // namespace mend::server_detail

#endif  // MEND_SERVER_HOUSEKEEPING_H_
