#include "mend/core/escalation.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "json_writer.h"

namespace mend {

std::string_view to_string(RecordKind kind) noexcept {
  return kind == RecordKind::incident ? "incident" : "ticket";
}

std::string_view to_string(RecordStatus status) noexcept {
  switch (status) {
    case RecordStatus::open:
      return "open";
    case RecordStatus::acknowledged:
      return "acknowledged";
    case RecordStatus::resolved:
      return "resolved";
  }
  return "unknown";
}

std::optional<RecordKind> parse_record_kind(std::string_view name) noexcept {
  if (name == "ticket") return RecordKind::ticket;
  if (name == "incident") return RecordKind::incident;
  return std::nullopt;
}

std::optional<RecordStatus> parse_record_status(std::string_view name) noexcept {
  if (name == "open") return RecordStatus::open;
  if (name == "acknowledged") return RecordStatus::acknowledged;
  if (name == "resolved") return RecordStatus::resolved;
  return std::nullopt;
}

std::string EscalationRecord::display_id() const {
  return (kind == RecordKind::incident ? "INC-" : "TKT-") + std::to_string(id);
}

std::string EscalationRecord::to_json() const {
  detail::JsonWriter w;
  w.begin_object();
  w.key("id").string(display_id());
  w.key("number").number(id);
  w.key("kind").string(to_string(kind));
  w.key("status").string(to_string(status));
  w.key("level").string(to_string(level));
  w.key("tier").number(tier);
  w.key("priority").string(priority);
  w.key("title").string(title);
  w.key("description").string(description);
  w.key("agent").string(agent);
  w.key("task_type").string(task_type);
  w.key("error_type").string(to_string(error_type));
  w.key("fingerprint").string(fingerprint);
  w.key("channel").string(channel);
  w.key("occurrences").number(occurrences);
  w.key("assignee").string(assignee);
  w.key("created_at").string(to_iso8601(created_at));
  w.key("last_seen_at").string(to_iso8601(last_seen_at));
  w.key("sla_due").string(to_iso8601(sla_due));
  if (review_at) w.key("review_at").string(to_iso8601(*review_at));
  if (acknowledged_at) {
    w.key("acknowledged_at").string(to_iso8601(*acknowledged_at));
    w.key("acknowledged_by").string(acknowledged_by);
  }
  if (resolved_at) {
    w.key("resolved_at").string(to_iso8601(*resolved_at));
    w.key("resolved_by").string(resolved_by);
  }
  if (!war_room_url.empty()) w.key("war_room_url").string(war_room_url);
  w.end_object();
  return std::move(w).str();
}

EscalationPolicy::EscalationPolicy(EscalationOptions options) : options_(std::move(options)) {
  auto positive = [](Duration d, const char* field) {
    if (d <= Duration::zero()) {
      throw std::invalid_argument(std::string("escalation: ") + field + " must be positive");
    }
  };
  positive(options_.medium_sla, "medium_sla");
  positive(options_.high_sla, "high_sla");
  positive(options_.critical_sla, "critical_sla");
  positive(options_.review_after, "review_after");
  if (options_.max_tiers < 0) throw std::invalid_argument("escalation: max_tiers must be >= 0");
}

EscalationPlan EscalationPolicy::plan(Severity level) const {
  EscalationPlan p;
  p.level = level;
  switch (level) {
    case Severity::low:
      p.action = "logged";
      p.retry_recommended = true;
      break;
    case Severity::medium:
      p.action = "notified_and_ticketed";
      p.human_intervention = true;
      p.ticket = true;
      p.channel = options_.team_channel;
      p.priority = "medium";
      p.sla = options_.medium_sla;
      break;
    case Severity::high:
      p.action = "high_priority_alert";
      p.human_intervention = true;
      p.ticket = true;
      p.channel = options_.oncall_channel;
      p.priority = "high";
      p.assignee = options_.oncall_assignee;
      p.sla = options_.high_sla;
      p.review_in = options_.review_after;
      break;
    case Severity::critical:
      p.action = "critical_incident";
      p.human_intervention = true;
      p.incident = true;
      p.war_room = true;
      p.page = true;
      p.channel = options_.emergency_channel;
      p.priority = "critical";
      p.sla = options_.critical_sla;
      break;
  }
  return p;
}

std::string EscalationPolicy::fingerprint(const std::map<std::string, std::string>& labels) const {
  std::vector<std::string> names = options_.fingerprint_labels;
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  // FNV-1a, 64 bits: stable across processes, builds and platforms (std::hash is not).
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // a separator no UTF-8 text contains, so "ab"+"c" differs from "a"+"bc"
    h *= 1099511628211ull;
  };
  for (const auto& name : names) {
    auto it = labels.find(name);
    mix(name);
    mix(it == labels.end() ? std::string_view() : std::string_view(it->second));
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

namespace {
// Fills in what a level decides about a record: its kind is fixed when it opens, the rest moves
// with re-escalation.
void apply_level(EscalationRecord& r, const EscalationPlan& p, WallTime now) {
  r.level = p.level;
  r.priority = p.priority;
  r.channel = p.channel;
  if (!p.assignee.empty()) r.assignee = p.assignee;
  r.sla_due = now + std::chrono::duration_cast<WallTime::duration>(p.sla.value_or(Duration{}));
  if (p.review_in) {
    r.review_at = now + std::chrono::duration_cast<WallTime::duration>(*p.review_in);
  }
}
}  // namespace

EscalationRecord EscalationPolicy::open_record(Severity level, std::string fingerprint,
                                               std::string title, std::string description,
                                               WallTime now) const {
  EscalationRecord r;
  const EscalationPlan p = plan(level);
  r.kind = p.incident ? RecordKind::incident : RecordKind::ticket;
  r.fingerprint = std::move(fingerprint);
  r.title = std::move(title);
  r.description = std::move(description);
  r.created_at = now;
  r.last_seen_at = now;
  apply_level(r, p, now);
  return r;
}

std::string EscalationPolicy::war_room_url(const EscalationRecord& record) const {
  std::string url = options_.war_room_url_template;
  auto replace_all = [&url](std::string_view from, const std::string& to) {
    for (std::size_t pos = url.find(from); pos != std::string::npos;
         pos = url.find(from, pos + to.size())) {
      url.replace(pos, from.size(), to);
    }
  };
  replace_all("{id}", record.display_id());
  replace_all("{number}", std::to_string(record.id));
  return url;
}

std::optional<Reescalation> EscalationPolicy::reescalation_due(const EscalationRecord& record,
                                                               WallTime now) const {
  if (!options_.reescalate || record.status != RecordStatus::open) return std::nullopt;
  if (now < record.sla_due) return std::nullopt;
  Reescalation step;
  step.from_level = record.level;
  if (record.level < Severity::critical) {
    step.to_level = static_cast<Severity>(static_cast<int>(record.level) + 1);
    step.to_tier = record.tier;
    return step;
  }
  if (record.tier >= options_.max_tiers) return std::nullopt;
  step.to_level = Severity::critical;
  step.to_tier = record.tier + 1;
  return step;
}

void EscalationPolicy::apply(EscalationRecord& record, const Reescalation& step,
                             WallTime now) const {
  apply_level(record, plan(step.to_level), now);
  record.tier = step.to_tier;
}

ResponseTimes response_times(const std::vector<EscalationRecord>& records) {
  ResponseTimes out;
  Duration ack_total{};
  Duration resolve_total{};
  for (const auto& r : records) {
    if (r.acknowledged_at) {
      ack_total += std::chrono::duration_cast<Duration>(*r.acknowledged_at - r.created_at);
      ++out.acknowledged;
    }
    if (r.resolved_at) {
      resolve_total += std::chrono::duration_cast<Duration>(*r.resolved_at - r.created_at);
      ++out.resolved;
    }
  }
  if (out.acknowledged > 0) out.mtta = ack_total / out.acknowledged;
  if (out.resolved > 0) out.mttr = resolve_total / out.resolved;
  return out;
}

}  // namespace mend
