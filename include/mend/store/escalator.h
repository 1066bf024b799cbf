// File: mend/store/escalator.h
//
// Carries escalations out: the workflow decides "high, for this fingerprint"; the Escalator
// opens the ticket or incident (or counts one more occurrence of the active one), opens the war
// room of a critical incident, and writes the notifications for the people concerned into the
// store's outbox, all in one transaction. It also runs the lifecycle (acknowledge, resolve) and
// the SLA clocks (re-escalation of what nobody acknowledged in time).
//
//   mend::Escalator escalator(store, clock, {.routes = {{"emergency", {"pagerduty", "slack"}}}});
//   mend::Workflow workflow(agents, {.escalations = &escalator});
//   ...
//   escalator.acknowledge(record_id, "alice");      // stops re-escalation
//   for (auto& r : escalator.check_slas()) ...      // call periodically (the daemon: every 10 s)
//
// Notifications are written, never sent, here: a dispatcher (mend/runtime/notifier.h) delivers the
// outbox. One notification per receiver goes out per state change of a record: opened
// ("trigger"), re-escalated ("reescalate"), acknowledged ("acknowledge"), resolved ("resolve").
// Further occurrences of an active record only count, so an outage of ten thousand failures
// notifies once. Each message's outbox key is "<record id>:<event>[:<step>]", so a replayed
// escalation or a second check_slas() at the same time never notifies twice.
//
// Thread-safety: all methods are safe to call from many threads at once (the store serialises).
#ifndef MEND_STORE_ESCALATOR_H_
#define MEND_STORE_ESCALATOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/escalation.h"
#include "mend/core/result.h"
#include "mend/core/store.h"
#include "mend/core/workflow.h"

namespace mend {

struct EscalatorOptions {
  EscalationOptions policy;  // levels, SLAs, channels, fingerprint labels, war room template
  // channel -> the receivers (by name) that get its notifications. A channel without a route
  // notifies nobody, and says so in the record's timeline.
  std::map<std::string, std::vector<std::string>> routes;
};

class Escalator final : public EscalationSink {
 public:
  // Throws std::invalid_argument for invalid policy options.
  Escalator(Store& store, const Clock& clock, EscalatorOptions options = {});

  // Low: logged only, no record. Otherwise opens or touches the record for the request's
  // fingerprint. Errors: the store failed (database_error); nothing was half-written.
  Result<EscalationTaken> escalate(const EscalationRequest& request) override;

  // open -> acknowledged; resolved records cannot be acknowledged (validation_failed), a second
  // acknowledgement changes nothing and notifies nobody. `who` is required.
  Result<EscalationRecord> acknowledge(std::int64_t record_id, const std::string& who);
  // open or acknowledged -> resolved. A resolved record is never re-escalated, and the next
  // occurrence of its fingerprint opens a new record.
  Result<EscalationRecord> resolve(std::int64_t record_id, const std::string& who);

  // Re-escalates every open record whose SLA has passed (mend/core/escalation.h), and returns them
  // as re-escalated. Acknowledged and resolved records are left alone.
  Result<std::vector<EscalationRecord>> check_slas();

  const EscalationPolicy& policy() const noexcept { return policy_; }

 private:
  // Writes one outbox message per receiver of the record's channel. Inside a transaction.
  void notify(const EscalationRecord& record, const std::string& event, const std::string& step,
              const std::string& actor, WallTime now);
  Result<EscalationRecord> change_status(std::int64_t record_id, const std::string& who,
                                         RecordStatus to);

  Store& store_;
  const Clock& clock_;
  EscalatorOptions options_;
  EscalationPolicy policy_;
};

}  // namespace mend

#endif  // MEND_STORE_ESCALATOR_H_
