// What a restart finds in the store: finished tasks kept, running ones resumed (after the agents
// are ready) or ended `interrupted` when running them again could repeat a call.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "api_codec.h"
#include "daemon_impl.h"
#include "task_rows.h"

namespace mend::server_detail {

namespace net = boost::asio;

Result<void> DaemonCore::recover_tasks(const Config& config,
                                       std::vector<std::pair<std::string, Task>>* resume) {
  std::vector<StoredTask> stored;
  std::int64_t next = 1;
  try {
    next = store_->next_task_number();
    stored = store_->load_tasks(config.tasks.retained);
  } catch (const std::exception& e) {
    return Error::classified_as(ErrorType::database_error, Severity::high,
                                std::string("reading the stored tasks: ") + e.what());
  }
  const WallTime now = clock_.wall_now();
  std::vector<TaskWrite> endings;
  std::size_t kept = 0;
  // Finished ones in the order they finished, as the registry evicts them and the store prunes
  // them; running ones after them, as they will finish after them.
  std::stable_sort(stored.begin(), stored.end(), [](const StoredTask& a, const StoredTask& b) {
    if (a.done != b.done) return a.done;
    return a.done && a.finished_at.value_or(WallTime{}) < b.finished_at.value_or(WallTime{});
  });
  const auto next_number = static_cast<std::uint64_t>(std::max<std::int64_t>(next, 1));
  for (StoredTask& t : stored) {
    TaskEntry entry;
    entry.task.id = t.id;
    entry.task.type = t.type;
    entry.task.agent = t.agent;
    entry.idempotency_key = t.idempotency_key;
    entry.request_digest = t.request_digest;
    entry.submitted_at = t.submitted_at;
    entry.attempts = t.attempts;
    entry.call_in_flight = t.call_in_flight;
    if (t.done) {
      entry.done = true;
      entry.status = t.status;
      entry.outcome_in_store = t.outcome_json.size() > kInlineOutcomeBytes;
      if (!entry.outcome_in_store) entry.outcome_json = std::move(t.outcome_json);
      tasks_.restore(std::move(entry), next_number);
      ++kept;
      continue;
    }
    entry.idempotent = idempotent_type(config.tasks, t.type);
    std::string why;
    if (t.deadline_at && now >= *t.deadline_at) {
      why = "mend restarted after the task's deadline had passed; it was not run again";
    } else if (t.call_in_flight && !entry.idempotent) {
      why = "mend stopped while a call to " +
            (t.agent.empty() ? std::string("an agent") : "agent '" + t.agent + "'") +
            " may have been in flight: the agent may have run it, and the task type '" + t.type +
            "' is not in tasks.idempotent_types, so mend did not send it again";
    }
    Result<Task> task = Error::classified_as(ErrorType::processing_failed, Severity::low, why);
    if (why.empty()) {
      task = task_from_stored(t);
      if (!task.ok())
        why = "mend restarted and could not run the task again: " + task.error().message;
    }
    if (!why.empty()) {
      TaskWrite write =
          finish_write(t.id, &entry.task, interrupted_outcome(t, why), t.attempts, now);
      entry.done = true;
      entry.status = write.task.status;
      entry.outcome_json = write.task.outcome_json;
      tasks_.restore(std::move(entry), next_number);
      endings.push_back(std::move(write));
      continue;
    }
    // The rest of its deadline, and the retries it had left.
    if (t.deadline_at) {
      task->deadline = std::chrono::duration_cast<Duration>(*t.deadline_at - now);
    }
    entry.task = *task;
    entry.status = "running";
    tasks_.restore(std::move(entry), next_number);
    resume->emplace_back(t.id, std::move(*task));
  }
  task_writer_->raise_task_number(next);
  for (TaskWrite& w : endings) {
    m_.tasks->with({std::string(to_string(OutcomeStatus::interrupted))}).inc();
    task_writer_->submit(std::move(w), {});
  }
  task_writer_->flush();
  if (!stored.empty()) {
    log("info", "tasks from the store: " + std::to_string(kept) + " finished kept, " +
                    std::to_string(resume->size()) + " resumed, " + std::to_string(endings.size()) +
                    " ended interrupted");
  }
  return {};
}

net::awaitable<void> DaemonCore::resume_tasks(std::vector<std::pair<std::string, Task>> tasks) {
  // Resumed tasks wait for the agents to be ready (their startup probes), at most kResumeGrace:
  // started at once, they would find every supervised agent still starting and end degraded.
  net::steady_timer timer(co_await net::this_coro::executor);
  const TimePoint until = clock_.now() + kResumeGrace;
  while (!stopping_.load() && !replicas_.every_agent_ready() && clock_.now() < until) {
    timer.expires_after(std::chrono::milliseconds(20));
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  std::shared_ptr<Generation> g = current();
  for (auto& [id, task] : tasks) start_task(id, std::move(task), g);
}
}  // namespace mend::server_detail
