// The daemon's task registry: the tasks it has accepted, their Idempotency-Keys, the clients
// waiting for an answer, and admission (how many may run at once, and none once it stops).
//
// It decides and remembers; it does no I/O. The daemon stores what it is told to store (the
// TaskWriter), runs the tasks and answers the clients the registry hands back. Time comes from the
// clock it is given, so every decision is testable on a manual clock (task_registry_test.cc).
//
//   TaskRegistry tasks(clock, {.max_in_flight = 1000, .retained = 10000});
//   TaskRegistry::Admission a = tasks.admit(task, key, digest, idempotent);
//   if (a.result == TaskRegistry::Admit::accepted) { /* store the task, then: */
//     tasks.mark_stored(a.id, &view);  /* run it; when it ends: */
//     tasks.finish(a.id, "succeeded", outcome_json, true);
//   }
//
// Thread safety: every member may be called from any thread; one mutex guards the state. The
// waiter factory given to wait() runs under that mutex and must not call back into the registry.
#ifndef MEND_SERVER_TASK_REGISTRY_H_
#define MEND_SERVER_TASK_REGISTRY_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/thread_annotations.h"
#include "mend/core/workflow.h"
#include "mend/runtime/http_server.h"

namespace mend::server_detail {

// A finished task's outcome up to this size stays in memory; a larger one is read from the store
// when asked for, so that retained tasks cost a bounded summary each.
inline constexpr std::size_t kInlineOutcomeBytes = 4096;

// What a client is told about a task: running, or done with its status and outcome.
struct TaskView {
  std::string id;
  bool done = false;
  std::string status;        // once done: the outcome's status
  std::string outcome_json;  // once done: the outcome, "" when it is to be read from the store
  bool outcome_in_store = false;
  WallTime submitted_at{};
};

// A client waiting for a task's answer, with the timer that answers "running" when it waited long
// enough (cancel() stops that timer once the task answered instead).
struct TaskWaiter {
  std::shared_ptr<HttpResponder> responder;
  std::function<void()> cancel;
  // Asked with no wait while the task was being stored: answered "running" once it is stored, or
  // refused with its first client if it cannot be, never told "running" about a task that may
  // then not exist.
  bool until_stored = false;
  bool replayed = false;
};

// A submitted task and the clients waiting for it. While it runs it holds the whole task; once
// finished only a summary (id, type, agent, status, and the outcome when it is small), however
// large its request was.
struct TaskEntry {
  Task task;
  std::string idempotency_key;
  std::string request_digest;  // SHA-256 of the submitted body: tells a replay from a conflict
  WallTime submitted_at{};
  TimePoint started{};
  bool stored = false;  // the store has it: until then it is neither run nor acknowledged
  bool done = false;
  // Its type is in tasks.idempotent_types: a call in flight at a crash may be sent again.
  bool idempotent = false;
  // What the store says (or will say once written): false only while the task waits in backoff.
  bool call_in_flight = true;
  int attempts = 0;          // calls to agents, those before a restart included
  std::string outcome_json;  // once done: the outcome, or "" when larger than kInlineOutcomeBytes
  bool outcome_in_store = false;  // once done: the outcome is read from the store
  std::string status;             // "running" or the outcome status
  std::vector<TaskWaiter> waiters;

  TaskView view() const;
};

// One row of GET /v1/tasks.
struct TaskListing {
  std::string id;
  std::string type;
  std::string agent;
  bool done = false;
  std::string status;
  WallTime submitted_at{};
};

class TaskRegistry {
 public:
  struct Limits {
    std::size_t max_in_flight = 1000;  // server.max_tasks_in_flight
    std::size_t retained = 10000;      // tasks.retained: finished tasks kept, newest
  };
  TaskRegistry(const Clock& clock, Limits limits);

  // --- admission ---------------------------------------------------------------------------
  enum class Admit : std::uint8_t {
    accepted,      // new: counts in flight, to be stored before it runs or is acknowledged
    replay,        // the Idempotency-Key and body of an earlier task: Admission::id is that task
    key_conflict,  // the Idempotency-Key of an earlier task with another body (Admission::id)
    id_taken,      // the client's id is that of a task known already
    full,          // Limits::max_in_flight tasks are in flight
    stopping,      // stop_admitting() was called
  };
  struct Admission {
    Admit result = Admit::stopping;
    std::string id;
    WallTime submitted_at{};  // accepted: when, as the store should record it
    // accepted: no generated id at or above it was handed out (the store's counter follows it).
    std::uint64_t next_task_number = 0;
  };
  // Admits `task`: gives it an id ("task-N", skipping ids clients chose) when it has none.
  Admission admit(Task& task, const std::string& idempotency_key, const std::string& digest,
                  bool idempotent);
  // From now on admit() says `stopping`: a submission either counts in flight before this call,
  // or sees it.
  void stop_admitting();
  std::size_t in_flight() const;
  // Waits (at most `timeout`, real time: it is the drain at shutdown) until nothing is in flight;
  // returns how many still are.
  std::size_t wait_drained(Duration timeout);

  // --- a task's life -------------------------------------------------------------------------
  // The store took the accepted task: it may run. Returns the clients that asked while it was
  // being stored, to be told "running"; `view` is what they are told.
  std::vector<TaskWaiter> mark_stored(const std::string& id, TaskView* view);
  // The store refused it or could not take it: it is forgotten (its key freed, no longer in
  // flight). Returns the clients that joined meanwhile, to hear what its first client hears.
  std::vector<TaskWaiter> forget_unstored(const std::string& id);

  // A change the store should learn (TaskWrite::Kind::progress).
  struct Progress {
    std::string id;
    bool call_in_flight = true;
    int attempts = 0;
    // The call must wait until the store says a call may be out: the task is not idempotent, so
    // a crash after the call must end it `interrupted`, not send it again.
    bool must_be_stored = false;
  };
  // A retry's backoff began: no call is out. nullopt when the store need not hear it.
  std::optional<Progress> backoff_began(const std::string& id);
  // A call to an agent is about to go out: counts the attempt. nullopt when the store says
  // "calling" already.
  std::optional<Progress> call_starting(const std::string& id);

  // What writing a task's end needs (its id, type and agent: the journal entry's; not its
  // payload, which is not copied) and its attempts so far; nullopt when unknown.
  std::optional<std::pair<Task, int>> running(const std::string& id) const;
  // The task ended with `status`: it keeps a summary (the outcome inline when small or when the
  // store does not have it), and the oldest finished tasks beyond Limits::retained go with their
  // keys. Returns its waiters, the view they are told and how long it ran (clock time since
  // admission or restore). It still counts in flight until release().
  struct Finished {
    std::vector<TaskWaiter> waiters;
    TaskView view;
    std::optional<Duration> ran_for;  // nullopt: the task was not known
  };
  Finished finish(const std::string& id, const std::string& status, const std::string& outcome_json,
                  bool outcome_stored);
  // The finished task's waiters were answered: it no longer counts in flight. Separate from
  // finish() so that a drain that sees nothing in flight also sees those answers under way.
  void release();

  // --- clients asking ------------------------------------------------------------------------
  struct Lookup {
    enum class Kind : std::uint8_t { unknown, answer_now, waiting } kind = Kind::unknown;
    TaskView view;  // answer_now: what to answer; waiting: the "running" view a timeout answers
  };
  // A client asks for task `id`, willing to wait when `wants_to_wait`. Answered now when the task
  // is done or the client does not wait (unless the task is not stored yet: then it waits until
  // stored). Otherwise make_waiter(until_stored, running) is called, under the registry's lock
  // (`running` is what its timeout answers), and the waiter it returns is answered when the task
  // ends (or is stored).
  Lookup wait(
      const std::string& id, bool wants_to_wait, bool stopping,
      const std::function<TaskWaiter(bool until_stored, const TaskView& running)>& make_waiter);
  // The waiter's timer fired: it is no longer waiting.
  void remove_waiter(const std::string& id, const std::shared_ptr<HttpResponder>& responder);

  std::vector<TaskListing> list() const;

  // --- restart -------------------------------------------------------------------------------
  // Puts back a task read from the store (stored already). A running one counts in flight;
  // `next_task_number` is the store's counter.
  void restore(TaskEntry entry, std::uint64_t next_task_number);

 private:
  void retire_oldest_finished() MEND_REQUIRES(mu_);

  const Clock& clock_;
  const Limits limits_;
  mutable Mutex mu_;
  std::condition_variable drained_;
  std::map<std::string, TaskEntry, std::less<>> tasks_ MEND_GUARDED_BY(mu_);
  std::map<std::string, std::string, std::less<>> idempotency_ MEND_GUARDED_BY(mu_);  // key -> id
  std::deque<std::string> finished_order_ MEND_GUARDED_BY(mu_);  // oldest first, for eviction
  // No generated id at or above it was handed out.
  std::uint64_t next_task_number_ MEND_GUARDED_BY(mu_) = 1;
  std::size_t in_flight_ MEND_GUARDED_BY(mu_) = 0;
  bool stopping_ MEND_GUARDED_BY(mu_) = false;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_TASK_REGISTRY_H_
