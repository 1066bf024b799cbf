#include "housekeeping.h"

namespace mend::server_detail {

HousekeepingSchedule::Due HousekeepingSchedule::take_due(TimePoint now,
                                                         const HousekeepingIntervals& intervals,
                                                         bool store_pass_free,
                                                         bool memory_watch_free) {
  Due due;
  if (store_pass_free) {
    due.deliver = now >= next_delivery_;
    due.check_slas = now >= next_sla_check_;
    if (due.deliver) next_delivery_ = now + intervals.delivery;
    if (due.check_slas) next_sla_check_ = now + intervals.sla_check;
  }
  if (memory_watch_free && now >= next_memory_watch_) {
    due.watch_memory = true;
    next_memory_watch_ = now + intervals.memory_watch;
  }
  if (now >= next_heartbeat_) {
    due.heartbeat = true;
    next_heartbeat_ = now + intervals.heartbeat;
  }
  return due;
}

StorePassReport run_store_pass(const StorePassParts& parts, bool deliver, bool check_slas) {
  StorePassReport report;
  // Kept escalations first: the notifications they add go out in this same pass.
  if (deliver) report.kept_escalations = parts.backlog.retry(parts.escalator);
  if (check_slas) {
    Result<std::vector<EscalationRecord>> breaches = parts.escalator.check_slas();
    if (breaches.ok()) {
      report.sla_breaches = std::move(*breaches);
    } else {
      report.sla_error = breaches.error().message;
    }
  }
  if (deliver) report.delivery = parts.dispatcher.deliver_due();
  // Finished tasks beyond tasks.retained leave the store as they leave memory.
  if (check_slas) report.tasks_pruned = parts.store.prune_tasks(parts.tasks_retained);
  return report;
}

}  // namespace mend::server_detail
