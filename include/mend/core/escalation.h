// File: mend/core/escalation.h
//
// Escalation to people, as the user's specification's decision tree has it, plus what
// Alertmanager and PagerDuty add: grouping by fingerprint, a lifecycle, SLA clocks and
// re-escalation.
//
//   low      -> logged, retry recommended; raised to medium when still unresolved
//   medium   -> fallback, notify the team channel ("engineering"), ticket (SLA 24 h)
//   high     -> alert on-call ("on-call"), high-priority ticket assigned to on-call, review
//               scheduled (SLA 2 h)
//   critical -> incident, page the emergency team ("emergency"), war room (SLA 15 min)
//
// Everything here is pure: `EscalationPolicy` answers what to do for a level, what a record's
// fingerprint is, and whether an open record is due for re-escalation at a given time. The store
// layer (mend/store/escalator.h) carries the answers out: it writes records and notifications.
//
//   mend::EscalationPolicy policy;                        // the specification's defaults
//   mend::EscalationPlan plan = policy.plan(mend::Severity::critical);
//   assert(plan.incident && plan.war_room && plan.sla == std::chrono::minutes(15));
//
// Thread-safety: EscalationPolicy is immutable after construction and safe to share. Records are
// values.
#ifndef MEND_CORE_ESCALATION_H_
#define MEND_CORE_ESCALATION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/error.h"

namespace mend {

enum class RecordKind : std::uint8_t { ticket, incident };
enum class RecordStatus : std::uint8_t { open, acknowledged, resolved };
std::string_view to_string(RecordKind kind) noexcept;
std::string_view to_string(RecordStatus status) noexcept;
std::optional<RecordKind> parse_record_kind(std::string_view name) noexcept;
std::optional<RecordStatus> parse_record_status(std::string_view name) noexcept;

// A ticket or an incident. One record stands for every occurrence of one fingerprint while it
// is not resolved: repeats raise `occurrences` and add to the timeline instead of opening more.
struct EscalationRecord {
  std::int64_t id = 0;  // assigned by the store
  RecordKind kind = RecordKind::ticket;
  std::string fingerprint;
  Severity level = Severity::medium;  // the current level; re-escalation raises it
  int tier = 0;  // at critical, re-escalation moves to the next tier of responders instead
  RecordStatus status = RecordStatus::open;
  std::string title;
  std::string description;
  std::string agent;
  std::string task_type;
  ErrorType error_type = ErrorType::processing_failed;
  std::string priority;  // "medium", "high", "critical"
  std::string assignee;  // "on-call-engineer" for high, empty otherwise
  std::string channel;   // where its notifications go
  std::int64_t occurrences = 1;
  WallTime created_at{};
  WallTime last_seen_at{};
  WallTime sla_due{};                 // acknowledgement is due by then
  std::optional<WallTime> review_at;  // high: the scheduled review
  std::optional<WallTime> acknowledged_at;
  std::string acknowledged_by;
  std::optional<WallTime> resolved_at;
  std::string resolved_by;
  std::string war_room_url;  // critical only

  // "TKT-42" or "INC-7": how people refer to it.
  std::string display_id() const;
  // The record as JSON, one shape wherever mend shows it (the API, notifications): "id" is the
  // display id, "number" the store's; times are UTC ISO 8601; optional fields only when set.
  std::string to_json() const;
  bool is_active() const noexcept { return status != RecordStatus::resolved; }
};

// One line of a record's history: opened, occurrence, acknowledged, resolved, reescalated,
// notified, war_room_opened, ...
struct TimelineEntry {
  std::int64_t record_id = 0;
  WallTime at{};
  std::string event;
  std::string actor;  // "mend" or the person
  std::string detail;
};

struct EscalationOptions {
  std::string team_channel = "engineering";     // medium
  std::string oncall_channel = "on-call";       // high
  std::string emergency_channel = "emergency";  // critical
  Duration medium_sla = std::chrono::hours(24);
  Duration high_sla = std::chrono::hours(2);
  Duration critical_sla = std::chrono::minutes(15);
  Duration review_after = std::chrono::hours(24);  // high: when the review is scheduled
  std::string oncall_assignee = "on-call-engineer";
  // "{id}" is replaced by the incident's display id, "{number}" by its number.
  std::string war_room_url_template = "https://chat.example.com/war-room/{id}";
  // The labels whose values make a fingerprint, as Alertmanager's group_by.
  std::vector<std::string> fingerprint_labels = {"agent", "error_type", "task_type"};
  // Re-escalate an unacknowledged record whose SLA passed (PagerDuty's escalation timeout).
  bool reescalate = true;
  // At critical, how many further tiers re-escalation may page before it stops.
  int max_tiers = 3;
};

// What to do at one level.
struct EscalationPlan {
  Severity level = Severity::medium;
  std::string action;  // logged, notified_and_ticketed, high_priority_alert, critical_incident
  bool retry_recommended = false;
  bool human_intervention = false;
  bool ticket = false;
  bool incident = false;
  bool war_room = false;
  bool page = false;     // critical: page the emergency team
  std::string channel;   // empty for low: nobody is notified
  std::string priority;  // of the ticket or incident
  std::string assignee;  // high: on-call
  std::optional<Duration> sla;
  std::optional<Duration> review_in;
};

// What the re-escalation check decided for one record.
struct Reescalation {
  Severity from_level = Severity::medium;
  Severity to_level = Severity::medium;
  int to_tier = 0;
};

class EscalationPolicy {
 public:
  explicit EscalationPolicy(EscalationOptions options = {});

  EscalationPlan plan(Severity level) const;

  // The specification's "low -> escalate to medium" when retries did not resolve the error.
  static Severity effective_level(Severity level, bool resolved) noexcept {
    return (level == Severity::low && !resolved) ? Severity::medium : level;
  }

  // Hash of the sorted "label=value" pairs of the configured labels (missing labels count as
  // empty), as 16 hex digits: equal labels give equal fingerprints across processes and builds.
  std::string fingerprint(const std::map<std::string, std::string>& labels) const;

  // A new record for a first occurrence at `level`, `now`. Leaves id 0 and the war room URL empty
  // (it needs the id: see war_room_url()).
  EscalationRecord open_record(Severity level, std::string fingerprint, std::string title,
                               std::string description, WallTime now) const;
  std::string war_room_url(const EscalationRecord& record) const;

  // For an open (unacknowledged) record whose SLA has passed: the next level (medium -> high ->
  // critical), or at critical the next tier up to max_tiers. nullopt when nothing is due.
  std::optional<Reescalation> reescalation_due(const EscalationRecord& record, WallTime now) const;
  // Applies a re-escalation: level or tier, assignee, channel, priority, a fresh SLA from `now`.
  void apply(EscalationRecord& record, const Reescalation& step, WallTime now) const;

  const EscalationOptions& options() const noexcept { return options_; }

 private:
  EscalationOptions options_;
};

// Mean time to acknowledge and to resolve over records that were acknowledged / resolved.
struct ResponseTimes {
  std::optional<Duration> mtta;
  std::optional<Duration> mttr;
  int acknowledged = 0;
  int resolved = 0;
};
ResponseTimes response_times(const std::vector<EscalationRecord>& records);

}  // namespace mend

#endif  // MEND_CORE_ESCALATION_H_
