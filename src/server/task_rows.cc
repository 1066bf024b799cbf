// A task as the store keeps it (task_rows.h): written when accepted and when it ends, read back
// to run it again after a restart.
#include "task_rows.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "api_codec.h"
#include "mend/runtime/agent_client.h"
#include "mend/store/journal.h"

namespace mend::server_detail {

using nlohmann::json;

bool idempotent_type(const TasksConfig& tasks, const std::string& type) {
  return std::find(tasks.idempotent_types.begin(), tasks.idempotent_types.end(), type) !=
         tasks.idempotent_types.end();
}

// The task as the store keeps it to run it again: what the API parsed, not the client's bytes.
std::string task_request_json(const Task& task) {
  json j = {{"type", task.type}, {"agent", task.agent}, {"capabilities", task.capabilities}};
  j["payload"] = json::parse(task.payload, nullptr, false);
  if (task.attempt_timeout) j["attempt_timeout"] = to_seconds(*task.attempt_timeout);
  return dump(j);
}

StoredTask stored_running_task(const Task& task, const std::string& key, const std::string& digest,
                               WallTime now) {
  StoredTask t;
  t.id = task.id;
  t.idempotency_key = key;
  t.request_digest = digest;
  t.type = task.type;
  t.agent = task.agent;
  t.request_json = task_request_json(task);
  t.call_in_flight = true;  // until a backoff wait says otherwise
  t.submitted_at = now;
  if (task.deadline) {
    t.deadline_at = now + std::chrono::duration_cast<WallTime::duration>(*task.deadline);
  }
  return t;
}

// A stored running task to run again, or an error saying why it cannot be.
Result<Task> task_from_stored(const StoredTask& stored) {
  json j = json::parse(stored.request_json, nullptr, false);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return Error::classified_as(ErrorType::data_corruption, Severity::medium,
                                "its stored request is unreadable");
  }
  Task task;
  task.id = stored.id;
  task.type = j["type"].get<std::string>();
  task.agent = j.value("agent", std::string());
  if (j.contains("capabilities") && j["capabilities"].is_array()) {
    for (const json& c : j["capabilities"]) {
      if (c.is_string()) task.capabilities.push_back(c.get<std::string>());
    }
  }
  if (j.contains("payload") && !j["payload"].is_discarded()) task.payload = dump(j["payload"]);
  if (j.contains("attempt_timeout") && j["attempt_timeout"].is_number()) {
    task.attempt_timeout = from_seconds(j["attempt_timeout"].get<double>());
  }
  (void)fill_task_fields(task);
  // A call that may have been in flight counts: sent again, it is a retry.
  task.prior_attempts = stored.attempts + (stored.call_in_flight ? 1 : 0);
  return task;
}

// The write that ends a task: its outcome, and (when the task is known) its journal entry, which
// the store writes in the same transaction.
TaskWrite finish_write(const std::string& id, const Task* task, const Outcome& outcome,
                       int attempts, WallTime now) {
  TaskWrite write{TaskWrite::Kind::finish, {}, std::nullopt};
  write.task.id = id;
  write.task.done = true;
  write.task.status = std::string(to_string(outcome.status));
  write.task.outcome_json = outcome.to_json();
  write.task.attempts = attempts;
  write.task.finished_at = now;
  if (task != nullptr) write.journal = journal_entry(*task, outcome, now);
  return write;
}

// The final outcome of a task mend did not run again after a restart.
Outcome interrupted_outcome(const StoredTask& stored, const std::string& why) {
  Outcome outcome;
  outcome.task_id = stored.id;
  outcome.task_type = stored.type;
  outcome.primary_agent = stored.agent;
  outcome.status = OutcomeStatus::interrupted;
  outcome.error = Error::classified_as(ErrorType::service_unavailable, Severity::medium, why);
  return outcome;
}

}  // namespace mend::server_detail
