#include "mend/store/escalator.h"

#include <algorithm>
#include <exception>
#include <nlohmann/json.hpp>

namespace mend {
namespace {

std::string notification_payload(const EscalationRecord& r, const std::string& event,
                                 const std::string& actor, WallTime now) {
  // The record as the API shows it, and the change this message tells of.
  nlohmann::json j = nlohmann::json::parse(r.to_json());
  j["event"] = event;
  j["at"] = to_iso8601(now);
  j["actor"] = actor;
  // The names notifications had before "id" and "number": receivers may still read them.
  j["record"] = r.display_id();
  j["record_id"] = r.id;
  // Agent messages may hold any bytes; replace what is not UTF-8 instead of throwing.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Error store_failure(const std::exception& e) {
  if (const auto* m = dynamic_cast<const Exception*>(&e)) return m->error();
  return Error::classified_as(ErrorType::database_error, Severity::high, e.what());
}

}  // namespace

Escalator::Escalator(Store& store, const Clock& clock, EscalatorOptions options)
    : store_(store), clock_(clock), options_(std::move(options)), policy_(options_.policy) {}

void Escalator::notify(const EscalationRecord& record, const std::string& event,
                       const std::string& step, const std::string& actor, WallTime now) {
  auto route = options_.routes.find(record.channel);
  if (route == options_.routes.end() || route->second.empty()) {
    store_.append_timeline({record.id, now, "not_notified", "mend",
                            "no receivers are routed for channel '" + record.channel + "'"});
    return;
  }
  const std::string payload = notification_payload(record, event, actor, now);
  std::string key = std::to_string(record.id) + ":" + event;
  if (!step.empty()) key += ":" + step;
  for (const std::string& receiver : route->second) {
    OutboxMessage m;
    m.receiver = receiver;
    m.dedup_key = key;
    m.record_id = record.id;
    m.event = event;
    m.payload = payload;
    m.created_at = now;
    m.next_attempt_at = now;
    if (store_.enqueue(m)) {
      store_.append_timeline({record.id, now, "notification_queued", "mend",
                              event + " -> " + receiver + " (" + record.channel + ")"});
    }
  }
}

Result<EscalationTaken> Escalator::escalate(const EscalationRequest& request) {
  const EscalationPlan plan = policy_.plan(request.level);
  EscalationTaken taken = EscalationTaken::planned(plan);
  if (!plan.ticket && !plan.incident) return taken;  // low: logged only

  taken.fingerprint = policy_.fingerprint(request.labels);
  const WallTime now = request.at.value_or(clock_.wall_now());
  const std::string label =
      plan.incident ? "CRITICAL: "
                    : (request.level == Severity::high ? "HIGH SEVERITY: " : "Medium Severity: ");
  EscalationRecord fresh = policy_.open_record(
      request.level, taken.fingerprint,
      label + std::string(to_string(request.error.type)) + " on " + request.agent,
      request.error.describe(), now);
  fresh.agent = request.agent;
  fresh.task_type = request.task_type;
  fresh.error_type = request.error.type;
  fresh.occurrences = std::max<std::int64_t>(1, request.occurrences);
  try {
    store_.transaction([&] {
      RecordUpsert u = store_.open_or_touch(fresh, now);
      EscalationRecord& r = u.record;
      if (u.created) {
        store_.append_timeline(
            {r.id, now, "task", "mend", "first occurrence: task " + request.task_id});
        if (plan.war_room) {
          r.war_room_url = policy_.war_room_url(r);
          store_.update_record(r);
          store_.append_timeline({r.id, now, "war_room_opened", "mend", r.war_room_url});
        }
        notify(r, "trigger", "", "mend", now);
      } else if (request.level > r.level) {
        // A worse failure of an active record raises it (a critical one on a medium ticket
        // pages now), with a war room once it is critical.
        const Reescalation step{r.level, request.level, r.tier};
        policy_.apply(r, step, now);
        if (plan.war_room && r.war_room_url.empty()) {
          r.war_room_url = policy_.war_room_url(r);
          store_.append_timeline({r.id, now, "war_room_opened", "mend", r.war_room_url});
        }
        store_.update_record(r);
        store_.append_timeline({r.id, now, "raised", "mend",
                                std::string(to_string(step.from_level)) + " -> " +
                                    std::string(to_string(step.to_level)) + ": task " +
                                    request.task_id});
        notify(r, "reescalate", std::string(to_string(r.level)) + "." + std::to_string(r.tier),
               "mend", now);
      }
      taken.created = u.created;
      taken.record_id = r.id;
      taken.record = r.display_id();
      taken.kind = r.kind;
      taken.occurrences = r.occurrences;
      taken.war_room_url = r.war_room_url;
      // An active record keeps the level it has reached, which re-escalation may have raised.
      taken.level = r.level;
      taken.channel = r.channel;
      taken.assignee = r.assignee;
    });
  } catch (const std::exception& e) {
    return store_failure(e);
  }
  return taken;
}

Result<EscalationRecord> Escalator::change_status(std::int64_t record_id, const std::string& who,
                                                  RecordStatus to) {
  if (who.empty()) {
    return Error::classified_as(ErrorType::validation_failed, Severity::low,
                                "who acknowledges or resolves must be named");
  }
  const WallTime now = clock_.wall_now();
  std::optional<Error> refused;
  EscalationRecord out;
  try {
    store_.transaction([&] {
      std::optional<EscalationRecord> found = store_.record(record_id);
      if (!found) {
        refused = Error::classified_as(ErrorType::validation_failed, Severity::low,
                                       "no ticket or incident " + std::to_string(record_id));
        return;
      }
      EscalationRecord& r = *found;
      out = r;
      if (r.status == RecordStatus::resolved) {
        if (to == RecordStatus::acknowledged) {
          refused = Error::classified_as(ErrorType::validation_failed, Severity::low,
                                         r.display_id() + " is already resolved");
        }
        return;  // resolving twice changes nothing
      }
      if (r.status == to) return;  // acknowledging twice changes nothing
      r.status = to;
      std::string event;
      if (to == RecordStatus::acknowledged) {
        r.acknowledged_at = now;
        r.acknowledged_by = who;
        event = "acknowledge";
      } else {
        r.resolved_at = now;
        r.resolved_by = who;
        event = "resolve";
      }
      store_.update_record(r);
      store_.append_timeline({r.id, now, std::string(to_string(to)), who, ""});
      notify(r, event, "", who, now);
      out = r;
    });
  } catch (const std::exception& e) {
    return store_failure(e);
  }
  if (refused) return *refused;
  return out;
}

Result<EscalationRecord> Escalator::acknowledge(std::int64_t record_id, const std::string& who) {
  return change_status(record_id, who, RecordStatus::acknowledged);
}

Result<EscalationRecord> Escalator::resolve(std::int64_t record_id, const std::string& who) {
  return change_status(record_id, who, RecordStatus::resolved);
}

Result<std::vector<EscalationRecord>> Escalator::check_slas() {
  const WallTime now = clock_.wall_now();
  std::vector<EscalationRecord> raised;
  try {
    store_.transaction([&] {
      RecordFilter filter;
      filter.status = RecordStatus::open;
      filter.limit = 100000;
      for (EscalationRecord& r : store_.records(filter)) {
        std::optional<Reescalation> step = policy_.reescalation_due(r, now);
        if (!step) continue;
        policy_.apply(r, *step, now);
        if (r.level == Severity::critical && r.war_room_url.empty()) {
          // Reaching critical brings the war room, whether the record opened there or not.
          r.war_room_url = policy_.war_room_url(r);
          store_.append_timeline({r.id, now, "war_room_opened", "mend", r.war_room_url});
        }
        store_.update_record(r);
        const std::string detail = std::string(to_string(step->from_level)) + " -> " +
                                   std::string(to_string(step->to_level)) + ", tier " +
                                   std::to_string(step->to_tier) + ": SLA passed unacknowledged";
        store_.append_timeline({r.id, now, "reescalated", "mend", detail});
        notify(r, "reescalate",
               std::string(to_string(step->to_level)) + "." + std::to_string(step->to_tier), "mend",
               now);
        raised.push_back(std::move(r));
      }
    });
  } catch (const std::exception& e) {
    return store_failure(e);
  }
  return raised;
}

}  // namespace mend
