// File: mend/core/workflow.h
//
// The recovery workflow of the user's specification, as one entry point: a task goes through
// detect -> classify -> route by category -> recover -> escalate, and comes back as a structured
// `Outcome`: how it ended, which agent answered, every attempt with its error type, severity and
// delay, the agents skipped and why, the self-healing that ran, and the escalation taken.
//
//   mend::Workflow workflow(agents, {.degraded = &degraded, .healer = &healer,
//                                    .escalations = &escalator});
//   mend::Outcome out = workflow.run(task, invoker, &operations);   // synchronous
//   // or, on Asio coroutines: co_await mend::run_workflow_async(workflow, task, ...)
//   //                         (mend/runtime/async_workflow.h)
//
// Routing, per failed attempt (DESIGN.md §1 and the specification's architecture diagram):
//   transient -> retry the same agent with backoff (RetryOptions; Retry-After honoured); when
//                retries are exhausted, fall back to the next agent of the plan.
//   resource  -> a retryable one (connection_pool_exhausted) is retried first; then another
//                replica of the same agent, one the task has not failed on; then fall back.
// An agent's replicas share its load: each call's replica is the agent's balancer's pick (the less
// busy of two, ejected replicas left out: mend/core/replica_balancer.h), and a retry goes to a
// replica the task has not failed on when there is one.
//   logic     -> no retry: fall back (the next agent, in the end the degraded answer).
//   system    -> self-healing of that agent (diagnose, recover, re-check), then one more attempt
//                on it when it recovered; otherwise it is marked unhealthy and the task fails
//                over to the next agent.
//   external  -> the agent's circuit breaker counts it; fall back to the next agent.
// Every agent has a circuit breaker (mend/core/agents.h): an agent whose circuit is open, or that
// is unhealthy or full, is skipped with the reason recorded. When no agent answered, the degraded
// service answers (mend/core/degradation.h), or the task fails with the last error.
//
// Escalation (mend/core/escalation.h): a task whose low or medium failures were resolved by
// retrying (or healing) the primary is only logged. Otherwise the most severe error decides the
// level (low is raised to medium, as the specification's "escalate to medium" when retries did not
// resolve it; high and critical escalate even when resolved) and the escalation sink opens or
// touches a ticket or incident keyed by the fingerprint (agent, error type, task type).
//
// Drivers: the workflow itself is a state machine (`WorkflowRun`) that yields steps: call an
// agent, wait, heal an agent, escalate, done. `Workflow::run` drives it synchronously (waits go
// through env.sleeper); mend/runtime/async_workflow.h drives the same machine on Asio coroutines.
// Tests drive it on a manual clock.
//
// Hedging (mend/core/hedging.h; AgentInfo::hedging): a call to an agent that has a hedging policy
// and at least two replicas, for a task type the policy hedges, comes as a call step with
// `hedge_after`: when the call has not answered after that delay, a driver that can wait on two
// calls at once asks the run for a hedge (start_hedge(): another replica, the balancer's pick away
// from the first call's replica and those the task failed on, paid for from the agent's retry
// budget as a retry to another replica is; -1 when there is none or the budget refuses), sends the
// same task there, and hands back the first answer with the call it came from
// (provide_call_result(result, CallSlot::hedge)); it cancels the other call. A call that fails
// while the other is still out is handed over with provide_early_failure() and the other is
// waited for. The winner's result takes the ordinary way (its replica hears it); the loser is
// abandoned at the balancer, except a first call that lost to its hedge's answer: that counts as a
// failed (slow) call of its replica, as the relay counts it (docs/relay.md, "Hedging"). Every call
// that answered, hedged or not, is a sample of the policy's latency window. The attempt log says
// which calls were hedged (AttemptLog::hedge_replica, hedge_won) and an EventKind::hedged event
// says how each hedging delay ended. The synchronous driver does not hedge (it waits on one call
// at a time): it ignores hedge_after.
//
// Thread-safety: a Workflow is immutable once built and may run many tasks on many threads at
// once; the registry, healer and sinks it points to are thread-safe. A WorkflowRun belongs to
// one driver at a time.
#ifndef MEND_CORE_WORKFLOW_H_
#define MEND_CORE_WORKFLOW_H_

#include <coroutine>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/agents.h"
#include "mend/core/boxed.h"
#include "mend/core/degradation.h"
#include "mend/core/env.h"
#include "mend/core/error.h"
#include "mend/core/escalation.h"
#include "mend/core/recovery.h"
#include "mend/core/result.h"
#include "mend/core/retry.h"

namespace mend {

struct Task {
  std::string id;
  std::string type;   // code_review, deployment, ai_analysis, security_scan, ...
  std::string agent;  // the primary agent
  std::vector<std::string> capabilities;  // needed; empty: the primary's own
  std::string payload = "{}";             // JSON sent to agents as the task's "payload"
  // Top-level string fields of the payload ("content", ...): degraded handlers read them.
  std::map<std::string, std::string> fields;
  // Per call; nullopt: the agent's call timeout (AgentInfo::call_timeout), else the invoker's
  // default.
  std::optional<Duration> attempt_timeout;
  // For the whole task, from its start: no retry wait ends after it, a call is cut off when it
  // passes, and no further call starts once it has passed (the degraded answer still serves).
  std::optional<Duration> deadline;
  // Calls the task made before this run: a task resumed after mend restarted carries on with the
  // retries it had left. They count against the primary agent's retries.
  int prior_attempts = 0;
};

enum class OutcomeStatus : std::uint8_t {
  succeeded,              // the primary answered at the first attempt
  succeeded_after_retry,  // the primary answered after retries (or after self-healing)
  fallback,               // another agent answered
  degraded,               // no agent answered; the degraded service did
  failed,                 // nothing answered
  // mend stopped (killed, or shut down past its drain time) while the task ran, and did not run
  // it again: its call may have reached the agent (mend/server/daemon.h). Never the workflow's own.
  interrupted,
};
std::string_view to_string(OutcomeStatus status) noexcept;

// One call to an agent.
struct AttemptLog {
  std::string agent;
  int replica = 0;
  int attempt = 0;  // per agent: 0 for the first call
  bool succeeded = false;
  ErrorType error_type = ErrorType::processing_failed;  // when it failed
  Severity severity = Severity::medium;
  // A hedged call (WorkflowRun::start_hedge): whether this entry's result is the hedge's rather
  // than the first call's, and the replica the hedge went to (`replica` is the first call's; -1:
  // not hedged). An entry with decision "await_other" is one of the two calls that failed while
  // the other was out. (Here, in what was padding: a log entry stays 128 bytes.)
  bool hedge_won = false;
  std::optional<int> status;  // HTTP status, when there was one
  int hedge_replica = -1;
  std::string message;
  // What the workflow did next: "answered", "retry", "next_replica", "self_healing", "fallback",
  // "invalid_task"; or why the next call it had decided on was refused: "circuit_open",
  // "unhealthy", "no_capacity", "deadline_exceeded".
  std::string decision;
  Duration delay{};  // the wait before the next attempt
};

// What escalation did for a task.
struct EscalationTaken {
  Severity level = Severity::medium;
  std::string action;  // logged, notified_and_ticketed, high_priority_alert, critical_incident
  bool retry_recommended = false;
  std::int64_t record_id = 0;  // 0 when no record (logged only)
  std::string record;          // "TKT-3", "INC-1"
  RecordKind kind = RecordKind::ticket;
  bool created = false;  // false: an occurrence of an active record
  std::int64_t occurrences = 0;
  std::optional<Duration> sla;  // the SLA of the level the request asked for
  std::string channel;
  std::string assignee;
  std::string war_room_url;
  std::string fingerprint;
  // The store refused the record's write: mend keeps the escalation in memory and writes it (the
  // record, its occurrences, its notifications) once the store takes writes again
  // (mend/store/escalation_backlog.h). No record id until then.
  bool pending = false;

  // What `plan` decides, before any record exists (level, action, SLA, channel, assignee).
  static EscalationTaken planned(const EscalationPlan& plan);
};

// What the workflow asks the escalation sink to do.
struct EscalationRequest {
  Severity level = Severity::medium;  // already raised from low when unresolved
  Error error;                        // the most severe error of the task
  std::string agent;                  // the agent it came from
  std::string task_id;
  std::string task_type;
  std::map<std::string, std::string> labels;  // agent, error_type, task_type, severity
  // When it happened; the escalator's clock when empty. Set when an escalation is written late
  // (mend/store/escalation_backlog.h), so that the record and its SLA start at the failure.
  std::optional<WallTime> at;
  // How many failures this request stands for: more than one when escalations of one fingerprint
  // waited for the store together.
  std::int64_t occurrences = 1;
};

// Carries escalations out (mend/store/escalator.h writes tickets, incidents and notifications).
class EscalationSink {
 public:
  virtual ~EscalationSink() = default;
  virtual Result<EscalationTaken> escalate(const EscalationRequest& request) = 0;
};

struct Outcome {
  std::string task_id;
  std::string task_type;
  std::string primary_agent;
  OutcomeStatus status = OutcomeStatus::failed;
  std::string answered_by;  // the agent, or "degraded_service"; empty when failed
  std::string answer;       // the agent's JSON result, or the degraded answer's JSON
  std::vector<AttemptLog> attempts;
  std::vector<SkippedAgent> skipped;
  std::vector<HealingReport> healing;
  // The error that made mend leave the last agent it left (or refuse the task); unset when the
  // task never left its primary (answered at once, or after retries on it). Boxed (on the heap
  // when set) like `escalation`: a task waiting in backoff holds an Outcome with neither.
  Boxed<Error> error;
  Boxed<EscalationTaken> escalation;
  std::string escalation_error;  // the sink failed: why (the outcome stands regardless)
  Duration elapsed{};

  bool answered() const noexcept {
    return status != OutcomeStatus::failed && status != OutcomeStatus::interrupted;
  }
  std::string to_json() const;
};

// Calls an agent, synchronously. The runtime's HTTP invoker implements it
// (mend/runtime/agent_client.h); tests and in-process agents may implement it directly. The answer
// must be JSON text (it is embedded as is in Outcome::to_json() and the journal). An error status
// or an unreachable agent is an Error (unclassified is fine: the workflow classifies).
class AgentInvoker {
 public:
  virtual ~AgentInvoker() = default;
  virtual Result<std::string> invoke(const AgentInfo& agent, int replica, const Task& task,
                                     int attempt) = 0;
};

// Keeps a record of every task's outcome (the store layer's StoreTaskJournal writes it to the
// task journal). Called by the drivers once per task, after the outcome is final; must not throw.
class TaskJournal {
 public:
  virtual ~TaskJournal() = default;
  virtual void record(const Task& task, const Outcome& outcome) noexcept = 0;
  // Records without blocking, or returns false and does nothing. The async driver tries this on
  // its I/O thread first and calls record() on its blocking executor when it returns false. The
  // default never records: record() may block (a store write).
  virtual bool try_record(const Task& /*task*/, const Outcome& /*outcome*/) noexcept {
    return false;
  }
};

struct WorkflowOptions {
  // The specification's defaults: 3 retries, base 1 s, cap 60 s, its retryable set.
  RetryOptions retry;
  // Per-agent retry policies (and budgets) that replace `retry` for calls to that agent.
  std::map<std::string, RetryOptions> agent_retry;
  DegradedService* degraded = nullptr;    // none: a task nobody answered fails
  SelfHealer* healer = nullptr;           // none: system errors fall back without healing
  EscalationSink* escalations = nullptr;  // none: escalation is decided but not carried out
  TaskJournal* journal = nullptr;         // none: outcomes are returned, not recorded
  int max_agents = 8;                     // agents tried per task at most, primary included
};

class WorkflowRun;

// The Error::kind of a task that no agent can take as it is (its payload is not JSON, ...): the
// workflow fails it at once, without fallback, escalation or breaker accounting.
inline constexpr std::string_view kInvalidTaskKind = "invalid_task";

class Workflow {
 public:
  Workflow(AgentRegistry& agents, WorkflowOptions options, Env env = Env::system());

  // Runs `task` to its outcome on this thread. `operations` serves self-healing (probes and
  // recovery actions); without it, system errors fall back without healing.
  Outcome run(const Task& task, AgentInvoker& invoker, AgentOperations* operations = nullptr) const;

  // The state machine behind run(), for other drivers. Without `can_heal` (the driver has no
  // AgentOperations), system errors fall back without healing.
  std::unique_ptr<WorkflowRun> start(Task task, bool can_heal) const;

  AgentRegistry& agents() const noexcept { return agents_; }
  const WorkflowOptions& options() const noexcept { return options_; }
  const Env& env() const noexcept { return env_; }
  // The retry options and policy for calls to `agent` (its own, or the global ones).
  const RetryOptions& retry_options_for(std::string_view agent) const;
  const RetryPolicy& retry_policy_for(std::string_view agent) const;

 private:
  AgentRegistry& agents_;
  WorkflowOptions options_;
  Env env_;
  RetryPolicy retry_;
  std::map<std::string, RetryPolicy, std::less<>> agent_retry_;
  friend class WorkflowRun;
};

// One step the driver must carry out before resuming the run. The heal and escalate steps point
// into the run: valid until the run is resumed (next()) or destroyed.
struct WorkflowStep {
  enum class Kind : std::uint8_t { call, wait, heal, escalate, done };
  Kind kind = Kind::done;
  const AgentInfo* agent = nullptr;  // call, heal
  int replica = 0;                   // call
  int attempt = 0;                   // call
  // call: the task as the invoker gets it, its attempt_timeout set to the call's time limit
  // (mend::AttemptPolicy: the task's own or the agent's call timeout, within the deadline).
  const Task* task = nullptr;
  // call: the wait after which the call may be hedged (the agent's HedgingPolicy::delay); nullopt:
  // not hedged. A driver that cannot wait on two calls ignores it.
  std::optional<Duration> hedge_after;
  Duration delay{};                               // wait
  const Symptoms* symptoms = nullptr;             // heal
  const EscalationRequest* escalation = nullptr;  // escalate
};

// A task in progress. The driver loops: step = next(); carry it out; hand the result back with
// the matching provide_*(); until step.kind is done, then take_outcome().
class WorkflowRun {
 public:
  ~WorkflowRun();
  WorkflowRun(const WorkflowRun&) = delete;
  WorkflowRun& operator=(const WorkflowRun&) = delete;

  const WorkflowStep& next();
  // The two calls of a hedged call step: the step's own, and its hedge.
  enum class CallSlot : std::uint8_t { first, hedge };
  // The call step's result; for a hedged step, the result of the call that won (`from`).
  void provide_call_result(Result<std::string> result, CallSlot from = CallSlot::first) {
    call_result_ = std::move(result);
    call_from_ = from;
  }
  // A call step with hedge_after whose call has not answered after that delay: the replica to send
  // the same call (the step's agent, task and attempt) to, now outstanding at the balancer; -1: no
  // hedge (no other replica that is not ejected and that the task has not failed on, the retry
  // budget refused, the deadline passed, or a hedge was started already). At most one per step.
  int start_hedge();
  // One call of a hedged step failed while the other is still out: it is counted (its replica,
  // the retry budget, an attempt log entry "await_other") and the other call's result, handed over
  // with provide_call_result(), decides the step. Ignored unless a hedge was started.
  void provide_early_failure(CallSlot which, Error error);
  void provide_healing(HealingReport report);
  void provide_escalation(Result<EscalationTaken> taken);
  Outcome take_outcome() { return std::move(outcome_); }
  const Task& task() const noexcept { return task_; }

  // The coroutine type of the script; public only so that the script's definition can name it.
  struct Script;

 private:
  friend class Workflow;
  // One agent of the plan while it is being tried (its retries, replicas and healing).
  struct AgentTry;
  // What the script does before a call: make it, report the rate limiter's refusal as the call's
  // failure (it is retried after the limiter's wait, as the agent's own 429 would be), or leave
  // the agent (refused).
  enum class BeforeCall : std::uint8_t { call, rate_limited, refused };
  // What the script does after a call: the decision for the agent it called.
  enum class AfterCall : std::uint8_t {
    answered,
    invalid_task,
    retry,
    next_replica,
    heal,
    fallback
  };
  // The state of a heal or escalate step, on the heap: most runs never take one, and a run
  // waiting in backoff should be small (an outage may park 100,000 of them at once).
  struct PendingHeal;
  struct PendingEscalation;
  // The hedge of the call out, once start_hedge() sent one (on the heap: few calls are hedged).
  struct PendingHedge;

  WorkflowRun(const Workflow& workflow, Task task, bool can_heal);
  Script script();
  // The script's pieces that do not wait: plain functions, so that their locals stay off the
  // coroutine frame (GCC keeps every local of a coroutine in its frame for the whole run).
  void skip(const Candidate& candidate, SkipReason reason);
  BeforeCall before_call(AgentTry& agent);
  // No call to the agent after all: `skip` says why when it was not called yet (none: the
  // deadline passed), `decision` when it was.
  void refuse(AgentTry& agent, std::optional<SkipReason> skip, std::string_view decision,
              StopReason stop);
  AfterCall after_call(AgentTry& agent);
  void settle_hedge(AgentTry& agent, PendingHedge& hedge, CallSlot from, int loser, bool answered);
  bool after_healing(AgentTry& agent);  // true: recovered, call the agent again
  bool conclude();                      // true: an escalate step is prepared
  void after_escalation();
  void emit(EventKind kind, const std::string& agent, const Error* error, std::string detail,
            int attempt = 0, Duration delay = {}) const;

  const Workflow& workflow_;
  Task task_;
  const bool can_heal_;
  bool answered_ = false;
  bool invalid_task_ = false;
  bool healing_failed_ = false;  // self-healing asked for escalation
  bool primary_answered_after_retry_ = false;
  TimePoint started_{};
  std::optional<TimePoint> deadline_;
  Outcome outcome_;
  WorkflowStep step_;
  Boxed<Error> worst_;  // the most severe failure: it decides the escalation level
  std::string worst_agent_;
  // worst_ stands for an outage a skipped agent is in, not for a failure of this task: any real
  // failure replaces it.
  bool worst_from_skip_ = false;
  std::optional<Result<std::string>> call_result_;
  std::unique_ptr<PendingHeal> heal_;
  std::unique_ptr<PendingEscalation> escalation_;
  // The call step handed to the driver and not yet answered: its capacity slot and breaker
  // permit are given back if the run is destroyed before the answer (a driver that threw).
  AgentRegistry::Entry* call_agent_ = nullptr;
  CircuitBreaker::Permit call_permit_{};  // also of a rate-limited call: none (not allowed)
  // The replica the call went to (-1: none went), counted outstanding by the agent's balancer
  // until its result is reported, and when it started (the latency the balancer hears).
  int call_replica_ = -1;
  TimePoint call_started_{};
  // The task with the call's time limit, while a call is out whose limit is not the task's own.
  Boxed<Task> call_task_;
  RetryBudget* retry_token_held_ = nullptr;  // a budget's token, given back after the retry's call
  // The agent being called while a call step is out (start_hedge() reads its failed replicas).
  AgentTry* call_try_ = nullptr;
  std::unique_ptr<PendingHedge> hedge_;
  CallSlot call_from_ = CallSlot::first;  // which call the result came from
  std::coroutine_handle<> handle_;
};

}  // namespace mend

#endif  // MEND_CORE_WORKFLOW_H_
