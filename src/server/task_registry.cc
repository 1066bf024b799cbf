// The daemon's task registry (task_registry.h): admission, idempotency, waiters, retention.
#include "task_registry.h"

#include <algorithm>
#include <utility>

namespace mend::server_detail {

TaskView TaskEntry::view() const {
  TaskView v;
  v.id = task.id;
  v.done = done;
  v.status = status;
  v.outcome_json = outcome_json;
  v.outcome_in_store = outcome_in_store;
  v.submitted_at = submitted_at;
  return v;
}

namespace {

// What a client waiting for a task that is still running is told when its wait ends.
TaskView running_view(const TaskEntry& entry) {
  TaskView v;
  v.id = entry.task.id;
  v.submitted_at = entry.submitted_at;
  return v;
}

// What a finished task keeps of itself, and what its journal entry needs: id, type, agent.
Task summary_of(const Task& task) {
  Task summary;
  summary.id = task.id;
  summary.type = task.type;
  summary.agent = task.agent;
  return summary;
}

}  // namespace

TaskRegistry::TaskRegistry(const Clock& clock, Limits limits) : clock_(clock), limits_(limits) {}

TaskRegistry::Admission TaskRegistry::admit(Task& task, const std::string& idempotency_key,
                                            const std::string& digest, bool idempotent) {
  Admission a;
  MutexLock lock(mu_);
  if (stopping_) return a;
  if (!idempotency_key.empty()) {
    if (auto it = idempotency_.find(idempotency_key); it != idempotency_.end()) {
      if (auto existing = tasks_.find(it->second); existing != tasks_.end()) {
        a.id = it->second;
        a.result = existing->second.request_digest == digest ? Admit::replay : Admit::key_conflict;
        return a;
      }
    }
  }
  if (in_flight_ >= limits_.max_in_flight) {
    a.result = Admit::full;
    return a;
  }
  if (task.id.empty()) {
    // A client may have chosen an id of this form already: skipped. The store's counter is raised
    // (Admission::next_task_number) in the transaction that stores the task, so no generated id
    // is handed out twice, restarts included.
    do {
      task.id = "task-" + std::to_string(next_task_number_++);
    } while (tasks_.count(task.id));
  } else if (tasks_.count(task.id)) {
    a.result = Admit::id_taken;
    a.id = task.id;
    return a;
  }
  a.result = Admit::accepted;
  a.id = task.id;
  a.submitted_at = clock_.wall_now();
  a.next_task_number = next_task_number_;
  TaskEntry& entry = tasks_[task.id];
  entry.task = task;
  entry.idempotency_key = idempotency_key;
  entry.request_digest = digest;
  entry.submitted_at = a.submitted_at;
  entry.started = clock_.now();
  entry.status = "running";
  entry.idempotent = idempotent;
  if (!idempotency_key.empty()) idempotency_[idempotency_key] = task.id;
  ++in_flight_;
  return a;
}

void TaskRegistry::stop_admitting() {
  MutexLock lock(mu_);
  stopping_ = true;
}

std::size_t TaskRegistry::in_flight() const {
  MutexLock lock(mu_);
  return in_flight_;
}

std::size_t TaskRegistry::wait_drained(Duration timeout) {
  MutexLock lock(mu_);
  drained_.wait_for(lock.native(), timeout,
                    [this]() MEND_REQUIRES(mu_) { return in_flight_ == 0; });
  return in_flight_;
}

std::vector<TaskWaiter> TaskRegistry::mark_stored(const std::string& id, TaskView* view) {
  std::vector<TaskWaiter> told;
  MutexLock lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return told;
  it->second.stored = true;
  if (view != nullptr) *view = running_view(it->second);
  auto& waiters = it->second.waiters;
  for (auto w = waiters.begin(); w != waiters.end();) {
    if (w->until_stored) {
      told.push_back(std::move(*w));
      w = waiters.erase(w);
    } else {
      ++w;
    }
  }
  return told;
}

std::vector<TaskWaiter> TaskRegistry::forget_unstored(const std::string& id) {
  std::vector<TaskWaiter> waiters;
  {
    MutexLock lock(mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second.stored) return waiters;
    if (!it->second.idempotency_key.empty()) idempotency_.erase(it->second.idempotency_key);
    waiters.swap(it->second.waiters);
    tasks_.erase(it);
    --in_flight_;
  }
  drained_.notify_all();
  return waiters;
}

std::optional<TaskRegistry::Progress> TaskRegistry::backoff_began(const std::string& id) {
  MutexLock lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || it->second.done || !it->second.stored) return std::nullopt;
  it->second.call_in_flight = false;
  return Progress{id, false, it->second.attempts, false};
}

std::optional<TaskRegistry::Progress> TaskRegistry::call_starting(const std::string& id) {
  MutexLock lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || it->second.done) return std::nullopt;
  TaskEntry& entry = it->second;
  ++entry.attempts;
  if (entry.call_in_flight) return std::nullopt;  // the store says "calling" already
  entry.call_in_flight = true;
  return Progress{id, true, entry.attempts, !entry.idempotent};
}

std::optional<std::pair<Task, int>> TaskRegistry::running(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return std::nullopt;
  return std::make_pair(summary_of(it->second.task), it->second.attempts);
}

TaskRegistry::Finished TaskRegistry::finish(const std::string& id, const std::string& status,
                                            const std::string& outcome_json, bool outcome_stored) {
  Finished f;
  {
    MutexLock lock(mu_);
    auto it = tasks_.find(id);
    if (it != tasks_.end()) {
      TaskEntry& entry = it->second;
      entry.done = true;
      entry.status = status;
      // The summary a retained task keeps: its request goes, a large outcome is read back from
      // the store (unless the store failed to take it: then memory is all there is).
      // Moved out and dropped, not assigned over: a string assigned a short value keeps the
      // capacity of its long one, and the payload's 60 KB would stay.
      (void)std::exchange(entry.task, summary_of(entry.task));
      entry.outcome_in_store = outcome_stored && outcome_json.size() > kInlineOutcomeBytes;
      entry.outcome_json = entry.outcome_in_store ? std::string() : outcome_json;
      f.ran_for = clock_.now() - entry.started;
      f.waiters.swap(entry.waiters);
      f.view = entry.view();
      f.view.outcome_json = outcome_json;  // its waiters hear the whole outcome
      f.view.outcome_in_store = false;
      finished_order_.push_back(id);
      retire_oldest_finished();
    }
  }
  return f;
}

void TaskRegistry::release() {
  {
    MutexLock lock(mu_);
    if (in_flight_ > 0) --in_flight_;
  }
  drained_.notify_all();
}

void TaskRegistry::retire_oldest_finished() {
  while (finished_order_.size() > limits_.retained) {
    auto old = tasks_.find(finished_order_.front());
    if (old != tasks_.end()) {
      if (!old->second.idempotency_key.empty()) idempotency_.erase(old->second.idempotency_key);
      tasks_.erase(old);
    }
    finished_order_.pop_front();
  }
}

TaskRegistry::Lookup TaskRegistry::wait(
    const std::string& id, bool wants_to_wait, bool stopping,
    const std::function<TaskWaiter(bool until_stored, const TaskView& running)>& make_waiter) {
  Lookup lookup;
  MutexLock lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return lookup;
  TaskEntry& entry = it->second;
  // Not stored yet: its client has not heard "accepted" either, and it may still be refused.
  const bool until_stored = !entry.stored && !entry.done && (!wants_to_wait || stopping);
  if (!until_stored && (entry.done || !wants_to_wait || stopping)) {
    lookup.kind = Lookup::Kind::answer_now;
    lookup.view = entry.view();
    return lookup;
  }
  lookup.kind = Lookup::Kind::waiting;
  lookup.view = running_view(entry);
  entry.waiters.push_back(make_waiter(until_stored, lookup.view));
  return lookup;
}

void TaskRegistry::remove_waiter(const std::string& id,
                                 const std::shared_ptr<HttpResponder>& responder) {
  MutexLock lock(mu_);
  auto found = tasks_.find(id);
  if (found == tasks_.end()) return;
  std::erase_if(found->second.waiters,
                [&](const TaskWaiter& w) { return w.responder == responder; });
}

std::vector<TaskListing> TaskRegistry::list() const {
  std::vector<TaskListing> rows;
  MutexLock lock(mu_);
  rows.reserve(tasks_.size());
  for (const auto& [id, entry] : tasks_) {
    rows.push_back(
        {id, entry.task.type, entry.task.agent, entry.done, entry.status, entry.submitted_at});
  }
  return rows;
}

void TaskRegistry::restore(TaskEntry entry, std::uint64_t next_task_number) {
  MutexLock lock(mu_);
  next_task_number_ = std::max<std::uint64_t>(next_task_number_, next_task_number);
  const std::string id = entry.task.id;
  entry.stored = true;
  entry.started = clock_.now();
  if (!entry.idempotency_key.empty()) idempotency_[entry.idempotency_key] = id;
  if (entry.done) {
    finished_order_.push_back(id);
  } else {
    ++in_flight_;
  }
  tasks_[id] = std::move(entry);
}

}  // namespace mend::server_detail
