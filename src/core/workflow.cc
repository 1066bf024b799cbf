#include "mend/core/workflow.h"

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

#include "json_writer.h"
#include "mend/core/attempt_policy.h"

namespace mend {

std::string_view to_string(OutcomeStatus status) noexcept {
  switch (status) {
    case OutcomeStatus::succeeded:
      return "succeeded";
    case OutcomeStatus::succeeded_after_retry:
      return "succeeded_after_retry";
    case OutcomeStatus::fallback:
      return "fallback";
    case OutcomeStatus::degraded:
      return "degraded";
    case OutcomeStatus::failed:
      return "failed";
    case OutcomeStatus::interrupted:
      return "interrupted";
  }
  return "unknown";
}

// The workflow's script is a coroutine: it reads as the straight-line procedure it is, and each
// `co_yield` hands one step to whichever driver runs it (synchronous, Asio, a test).
struct WorkflowRun::Script {
  struct promise_type {
    std::exception_ptr error;
    Script get_return_object() {
      return Script{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(int) noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
  };
  std::coroutine_handle<promise_type> handle;
};

Workflow::Workflow(AgentRegistry& agents, WorkflowOptions options, Env env)
    : agents_(agents), options_(std::move(options)), env_(env), retry_(options_.retry) {
  for (const auto& [agent, retry] : options_.agent_retry) agent_retry_.emplace(agent, retry);
}

const RetryOptions& Workflow::retry_options_for(std::string_view agent) const {
  auto it = options_.agent_retry.find(std::string(agent));
  return it == options_.agent_retry.end() ? options_.retry : it->second;
}

const RetryPolicy& Workflow::retry_policy_for(std::string_view agent) const {
  auto it = agent_retry_.find(agent);
  return it == agent_retry_.end() ? retry_ : it->second;
}

std::unique_ptr<WorkflowRun> Workflow::start(Task task, bool can_heal) const {
  return std::unique_ptr<WorkflowRun>(
      new WorkflowRun(*this, std::move(task), can_heal && options_.healer != nullptr));
}

Outcome Workflow::run(const Task& task, AgentInvoker& invoker, AgentOperations* operations) const {
  std::unique_ptr<WorkflowRun> run = start(task, operations != nullptr);
  for (;;) {
    const WorkflowStep& step = run->next();
    switch (step.kind) {
      case WorkflowStep::Kind::call:
        // step.hedge_after is ignored: this thread waits on one call at a time, so it cannot race
        // a hedge against the call (the async driver does).
        run->provide_call_result(detail::guarded(
            [&] { return invoker.invoke(*step.agent, step.replica, *step.task, step.attempt); }));
        break;
      case WorkflowStep::Kind::wait:
        env_.sleeper->sleep_for(step.delay, {});
        break;
      case WorkflowStep::Kind::heal:
        // start() enabled healing only with both a healer and operations.
        // heal() turns failures of the operations and strategies into its report.
        run->provide_healing(options_.healer->heal(step.agent->name, *step.symptoms, *operations,
                                                   env_.clock->now()));
        break;
      case WorkflowStep::Kind::escalate:
        run->provide_escalation(
            detail::guarded([&] { return options_.escalations->escalate(*step.escalation); }));
        break;
      case WorkflowStep::Kind::done: {
        Outcome outcome = run->take_outcome();
        if (options_.journal != nullptr) options_.journal->record(run->task(), outcome);
        return outcome;
      }
    }
  }
}

struct WorkflowRun::AgentTry {
  AgentTry(const Candidate& c, AgentRegistry::Entry* e, const RetryPolicy& r)
      : candidate(c), entry(e), retry(r) {}
  // The agent's breaker, retry policy, rate limiter and call timeout, in their one order. Built
  // per use rather than kept: the AgentTry lives in the script's frame, which a run waiting in
  // backoff holds.
  AttemptPolicy policy() const {
    return AttemptPolicy(&entry->breaker, retry, entry->rate_limiter.get(),
                         entry->info.call_timeout);
  }
  const Candidate& candidate;
  AgentRegistry::Entry* entry;
  const RetryPolicy& retry;
  int replica = 0;  // of the latest call: the balancer's pick
  // The replicas this task's calls to the agent failed on: its next call goes to another one
  // when there is one (Envoy's previous-hosts retry rule). Empty, without a heap block, until a
  // call fails.
  std::vector<int> failed_replicas;
  int attempt = 0;
  int calls = 0;
  bool healed = false;
  Duration previous{};
  std::optional<Error> retried;  // the failure whose retry is about to be made
};

struct WorkflowRun::PendingHeal {
  Symptoms symptoms;
  Error error;  // the failure being healed
  std::optional<HealingReport> report;
};

struct WorkflowRun::PendingEscalation {
  EscalationRequest request;
  std::optional<Result<EscalationTaken>> taken;
};

struct WorkflowRun::PendingHedge {
  int first_replica = -1;  // the step's call's replica (call_replica_ is -1 once it failed early)
  int hedge_replica = -1;  // where the hedge went
  int replica = -1;        // the hedge's replica while it is outstanding at the balancer, else -1
  TimePoint started{};
  RetryBudget* token = nullptr;  // the budget's retry, given back when the step ends
};

WorkflowRun::WorkflowRun(const Workflow& workflow, Task task, bool can_heal)
    : workflow_(workflow), task_(std::move(task)), can_heal_(can_heal) {
  handle_ = script().handle;
}

WorkflowRun::~WorkflowRun() {
  if (retry_token_held_ != nullptr) retry_token_held_->release_retry();
  if (call_agent_ != nullptr) {
    workflow_.agents_.release(call_agent_->info.name);
    call_agent_->breaker.on_ignored(call_permit_);
    if (call_replica_ >= 0) call_agent_->balancer.abandon(call_replica_);
    if (hedge_ != nullptr && hedge_->replica >= 0) call_agent_->balancer.abandon(hedge_->replica);
  }
  if (hedge_ != nullptr && hedge_->token != nullptr) hedge_->token->release_retry();
  if (handle_) handle_.destroy();
}

const WorkflowStep& WorkflowRun::next() {
  auto h = std::coroutine_handle<Script::promise_type>::from_address(handle_.address());
  if (!h.done()) h.resume();
  if (h.promise().error) std::rethrow_exception(std::exchange(h.promise().error, nullptr));
  if (h.done()) step_ = WorkflowStep{};  // kind done
  return step_;
}

void WorkflowRun::provide_healing(HealingReport report) {
  if (heal_ != nullptr) heal_->report = std::move(report);
}

void WorkflowRun::provide_escalation(Result<EscalationTaken> taken) {
  if (escalation_ != nullptr) escalation_->taken = std::move(taken);
}

void WorkflowRun::emit(EventKind kind, const std::string& agent, const Error* error,
                       std::string detail, int attempt, Duration delay) const {
  const Env& env = workflow_.env_;
  if (env.events == nullptr) return;
  Event e;
  e.kind = kind;
  e.at = env.clock->now();
  e.source = agent;
  e.task_id = task_.id;
  e.attempt = attempt;
  e.delay = delay;
  if (error != nullptr) {
    e.error_type = error->type;
    e.severity = error->severity;
    e.stop = error->stop;
  }
  e.detail = std::move(detail);
  env.emit(e);
}

// The script keeps only what must survive a step (the plan, the agent being tried); every decision
// is made in the plain functions below it, and the call in flight is the run's (call_permit_).
WorkflowRun::Script WorkflowRun::script() {
  const Env& env = workflow_.env_;
  AgentRegistry& agents = workflow_.agents_;
  started_ = env.clock->now();
  if (task_.deadline) deadline_ = started_ + *task_.deadline;

  outcome_.task_id = task_.id;
  outcome_.task_type = task_.type;
  outcome_.primary_agent = task_.agent;

  int agents_tried = 0;
  for (const Candidate& candidate : agents.plan(task_.agent, task_.capabilities)) {
    if (agents_tried >= workflow_.options_.max_agents) break;
    if (deadline_ && env.clock->now() >= *deadline_) {
      // The task's time is up: no further agent is called (the degraded answer still serves).
      emit(EventKind::attempt_failed, candidate.agent, nullptr, "deadline_exceeded");
      break;
    }
    if (auto why = agents.unavailable_reason(candidate.agent)) {
      skip(candidate, *why);
      continue;
    }
    ++agents_tried;
    AgentTry agent{candidate, agents.find(candidate.agent),
                   workflow_.retry_policy_for(candidate.agent)};
    // A resumed task's earlier calls count against its primary's retries.
    if (candidate.agent == task_.agent) agent.attempt = std::max(0, task_.prior_attempts);
    for (;;) {
      const BeforeCall before = before_call(agent);
      if (before == BeforeCall::refused) break;
      if (before == BeforeCall::call) co_yield 0;  // before_call() prepared the call step
      const AfterCall after = after_call(agent);
      if (after == AfterCall::retry) {
        co_yield 0;  // after_call() prepared the wait step
        agent.previous = step_.delay;
        ++agent.attempt;
        continue;
      }
      if (after == AfterCall::next_replica) continue;
      if (after == AfterCall::heal) {
        co_yield 0;  // after_call() prepared the heal step
        if (after_healing(agent)) continue;
      }
      break;  // answered, invalid task, fallback, or not healed
    }
    if (answered_ || invalid_task_) break;
  }

  if (invalid_task_) {
    outcome_.status = OutcomeStatus::failed;
    outcome_.elapsed = env.clock->now() - started_;
    emit(EventKind::task_finished, task_.agent, nullptr, "failed: invalid_task");
    co_return;
  }
  if (conclude()) {
    co_yield 0;  // conclude() prepared the escalate step
    after_escalation();
  }
  outcome_.elapsed = env.clock->now() - started_;
  emit(EventKind::task_finished, task_.agent, nullptr, std::string(to_string(outcome_.status)));
}

void WorkflowRun::skip(const Candidate& candidate, SkipReason reason) {
  outcome_.skipped.push_back({candidate.agent, candidate.role, reason});
  emit(EventKind::agent_skipped, candidate.agent, nullptr, std::string(to_string(reason)));
  // An agent passed over because of an outage (its circuit open, or unhealthy) is that outage
  // still going on: with no failure of its own, the task escalates as the failures that caused
  // it did, so that it counts as an occurrence of their record, and reopens one once resolved.
  if (worst_ || (reason != SkipReason::circuit_open && reason != SkipReason::unhealthy)) return;
  const AgentRegistry::Entry* entry = workflow_.agents_.find(candidate.agent);
  const std::uint32_t code =
      entry == nullptr ? 0 : entry->last_failure.load(std::memory_order_relaxed);
  if (code == 0) return;
  const auto type = static_cast<ErrorType>((code - 1) / 8);
  const auto severity = static_cast<Severity>((code - 1) % 8);
  worst_ = Error::classified_as(type, severity,
                                "agent " + candidate.agent + " skipped (" +
                                    std::string(to_string(reason)) + ") after failing with " +
                                    std::string(to_string(type)));
  worst_agent_ = candidate.agent;
  worst_from_skip_ = true;
}

// Asks the agent's attempt policy for the next call and prepares its step, or says why not.
WorkflowRun::BeforeCall WorkflowRun::before_call(AgentTry& agent) {
  const Env& env = workflow_.env_;
  AgentRegistry::Entry* entry = agent.entry;
  // A retry is refused for an agent marked unhealthy (by its probes, or by a failed self-healing
  // elsewhere) while this task waited: it goes to the next agent instead.
  AttemptPolicy::Admission admission =
      agent.policy().admit(*env.clock, {.retrying = agent.calls > 0,
                                        .health = entry->health.load(std::memory_order_acquire),
                                        .deadline = deadline_,
                                        .attempt_timeout = task_.attempt_timeout});
  switch (admission.refusal) {
    case StopReason::none:
      break;
    case StopReason::rate_limited:
      // No call, no capacity taken; after_call() hears the limiter's error as the call's.
      call_permit_ = admission.permit;
      call_result_ = std::move(*admission.rejection);
      return BeforeCall::rate_limited;
    case StopReason::agent_unhealthy:
      refuse(agent, SkipReason::unhealthy, to_string(SkipReason::unhealthy),
             StopReason::agent_unhealthy);
      return BeforeCall::refused;
    case StopReason::deadline_exceeded:
      refuse(agent, std::nullopt, "deadline_exceeded", StopReason::deadline_exceeded);
      return BeforeCall::refused;
    default:  // circuit_open
      refuse(agent, SkipReason::circuit_open, to_string(SkipReason::circuit_open),
             StopReason::circuit_open);
      return BeforeCall::refused;
  }
  if (!workflow_.agents_.try_reserve(agent.candidate.agent)) {
    entry->breaker.on_ignored(admission.permit);
    refuse(agent, SkipReason::no_capacity, to_string(SkipReason::no_capacity),
           StopReason::bulkhead_full);
    return BeforeCall::refused;
  }
  // The replica: the balancer's pick (the less busy of two that are not ejected), away from the
  // replicas this task already failed on when it can. Only a call that goes takes one.
  const TimePoint now = env.clock->now();
  agent.replica = entry->balancer.pick(now, *env.random, agent.failed_replicas);
  call_replica_ = agent.replica;
  call_started_ = now;
  step_ = WorkflowStep{};
  step_.kind = WorkflowStep::Kind::call;
  step_.agent = &entry->info;
  step_.replica = agent.replica;
  step_.attempt = agent.attempt;
  step_.task = &task_;
  // Hedged: an agent with a hedging policy for this task type and another replica to go to. No
  // hedge when the delay would not come before the call's own time limit.
  if (entry->hedging != nullptr && entry->balancer.replicas() >= 2 &&
      entry->hedging->hedges(task_.type)) {
    const std::optional<Duration> delay = entry->hedging->delay(now);
    if (delay && (!admission.time_limit || *delay < *admission.time_limit)) {
      step_.hedge_after = *delay;
    }
  }
  if (admission.time_limit != task_.attempt_timeout) {
    // The invoker reads a call's time limit from the task it is given; the task itself keeps its
    // own (the journal records it, and a resumed task starts from it again).
    call_task_ = task_;
    call_task_->attempt_timeout = admission.time_limit;
    step_.task = &*call_task_;
  }
  call_result_.reset();
  call_from_ = CallSlot::first;
  call_agent_ = entry;
  call_try_ = &agent;
  call_permit_ = admission.permit;
  return BeforeCall::call;
}

int WorkflowRun::start_hedge() {
  if (call_try_ == nullptr || call_agent_ == nullptr || !step_.hedge_after || hedge_ != nullptr ||
      call_replica_ < 0) {
    return -1;
  }
  const Env& env = workflow_.env_;
  AgentTry& agent = *call_try_;
  AgentRegistry::Entry* entry = agent.entry;
  const TimePoint now = env.clock->now();
  std::vector<int> avoid = agent.failed_replicas;
  avoid.push_back(call_replica_);
  // A hedge is an extra call: paid for from the budget, at a retry to another replica's price
  // (as the relay pays for its hedges), and a call the agent's rate limit counts.
  RetryBudget* budget = agent.retry.options().budget.get();
  bool sent = !(deadline_ && now >= *deadline_) && entry->balancer.has_untried(now, avoid) &&
              (budget == nullptr || budget->try_acquire_retry(RetryCost::other_replica, now));
  if (sent && entry->rate_limiter != nullptr && !entry->rate_limiter->try_acquire(now).allowed) {
    if (budget != nullptr) budget->release_retry();
    sent = false;
  }
  if (!sent) {
    emit(EventKind::hedged, agent.candidate.agent, nullptr, "not_sent", agent.attempt);
    return -1;
  }
  hedge_ = std::make_unique<PendingHedge>();
  hedge_->first_replica = call_replica_;
  hedge_->token = budget;
  hedge_->started = now;
  hedge_->replica = entry->balancer.pick(now, *env.random, avoid);
  hedge_->hedge_replica = hedge_->replica;
  return hedge_->replica;
}

void WorkflowRun::provide_early_failure(CallSlot which, Error error) {
  if (hedge_ == nullptr || call_try_ == nullptr) return;
  const Env& env = workflow_.env_;
  AgentTry& agent = *call_try_;
  AgentRegistry::Entry* entry = agent.entry;
  int& replica = which == CallSlot::first ? call_replica_ : hedge_->replica;
  if (replica < 0) return;  // that call ended already
  const TimePoint started = which == CallSlot::first ? call_started_ : hedge_->started;
  env.classifier->classify_in_place(
      error, Context{{"agent", agent.candidate.agent}, {"task_type", task_.type}});
  const TimePoint now = env.clock->now();
  const int failed_on = std::exchange(replica, -1);
  entry->balancer.report(failed_on, ReplicaBalancer::result_of(error), now, now - started);
  if (std::find(agent.failed_replicas.begin(), agent.failed_replicas.end(), failed_on) ==
      agent.failed_replicas.end()) {
    agent.failed_replicas.push_back(failed_on);
  }
  // Counted as the call that it was (a hedge is a retry call); the breaker hears only the step's
  // result, one per call it admitted.
  const RetryOptions& retry = agent.retry.options();
  if (retry.budget != nullptr && error.stop == StopReason::none &&
      retry.retryable.contains(error.type)) {
    retry.budget->record_failure(/*retry=*/which == CallSlot::hedge || agent.attempt > 0);
  }
  AttemptLog log;
  log.agent = agent.candidate.agent;
  log.replica = hedge_->first_replica;
  log.attempt = agent.attempt;
  log.error_type = error.type;
  log.severity = error.severity;
  log.status = error.status;
  log.message = error.message;
  log.decision = "await_other";
  log.hedge_replica = hedge_->hedge_replica;
  log.hedge_won = which == CallSlot::hedge;
  outcome_.attempts.push_back(std::move(log));
  emit(EventKind::attempt_failed, agent.candidate.agent, &error, "await_other", agent.attempt);
}

// Before the first call, an agent that cannot be called is a skip (or, once the deadline has
// passed, the end of the plan). Before a retry (another task opened the circuit, or took the last
// slot, during the wait) the retry is refused: the failure it was for becomes the agent's last
// word, and the plan moves on.
void WorkflowRun::refuse(AgentTry& agent, std::optional<SkipReason> skip_reason,
                         std::string_view decision, StopReason stop) {
  if (agent.calls == 0) {
    if (skip_reason) {
      skip(agent.candidate, *skip_reason);
    } else {
      // As the plan's own check before an agent: no agent is called after the deadline.
      emit(EventKind::attempt_failed, agent.candidate.agent, nullptr, std::string(decision));
    }
    return;
  }
  if (!outcome_.attempts.empty()) outcome_.attempts.back().decision = decision;
  if (agent.retried) {
    agent.retried->stop = stop;
    emit(EventKind::attempt_failed, agent.candidate.agent, &*agent.retried, std::string(decision),
         agent.attempt);
    outcome_.error = std::move(*agent.retried);
  }
}

WorkflowRun::AfterCall WorkflowRun::after_call(AgentTry& agent) {
  const Env& env = workflow_.env_;
  const Candidate& candidate = agent.candidate;
  AgentRegistry::Entry* entry = agent.entry;
  const CircuitBreaker::Permit permit = call_permit_;
  // The replica called, -1 for a call the rate limiter refused: it hears how its call ended where
  // the breaker does. For a hedged call, the replica of the call whose result this is.
  int replica = std::exchange(call_replica_, -1);
  TimePoint started = call_started_;
  const CallSlot from = std::exchange(call_from_, CallSlot::first);
  call_try_ = nullptr;
  std::unique_ptr<PendingHedge> hedge = std::move(hedge_);
  int loser = -1;  // the other call of a hedged step, when it is still outstanding
  if (hedge != nullptr) {
    if (from == CallSlot::hedge) {
      loser = replica;
      replica = std::exchange(hedge->replica, -1);
      started = hedge->started;
    } else {
      loser = std::exchange(hedge->replica, -1);
    }
  }
  auto tell_balancer = [&](ReplicaCallResult result) {
    if (replica < 0) return;
    const TimePoint now = env.clock->now();
    entry->balancer.report(replica, result, now, now - started);
  };
  if (call_agent_ != nullptr) {  // not for a call the rate limiter refused: none was made
    call_agent_ = nullptr;
    workflow_.agents_.release(candidate.agent);
  }
  call_task_.reset();
  if (retry_token_held_ != nullptr) std::exchange(retry_token_held_, nullptr)->release_retry();
  ++agent.calls;
  Result<std::string> result =
      call_result_
          ? std::move(*call_result_)
          : Result<std::string>(Error::classified_as(ErrorType::processing_failed, Severity::medium,
                                                     "the driver gave no call result"));
  call_result_.reset();

  AttemptLog log;
  log.agent = candidate.agent;
  log.replica = agent.replica;
  log.attempt = agent.attempt;
  if (hedge != nullptr) {
    settle_hedge(agent, *hedge, from, loser, result.ok());
    log.replica = hedge->first_replica;
    log.hedge_replica = hedge->hedge_replica;
    log.hedge_won = from == CallSlot::hedge;
  }
  if (result.ok()) {
    agent.policy().succeeded(permit, *env.clock, /*retry=*/agent.attempt > 0);
    tell_balancer(ReplicaCallResult::succeeded);
    if (entry->hedging != nullptr && replica >= 0) {
      const TimePoint now = env.clock->now();
      entry->hedging->record(now - started, now);
    }
    entry->last_failure.store(0, std::memory_order_relaxed);  // no outage to speak for now
    log.succeeded = true;
    log.decision = "answered";
    outcome_.attempts.push_back(std::move(log));
    outcome_.answered_by = candidate.agent;
    outcome_.answer = std::move(*result);
    answered_ = true;
    if (candidate.role == CandidateRole::primary) {
      // A resumed task that called before the restart was retried too.
      primary_answered_after_retry_ = agent.calls > 1 || task_.prior_attempts > 0;
      outcome_.status = primary_answered_after_retry_ ? OutcomeStatus::succeeded_after_retry
                                                      : OutcomeStatus::succeeded;
    } else {
      outcome_.status = OutcomeStatus::fallback;
      emit(EventKind::fallback_used, candidate.agent, nullptr,
           "primary " + task_.agent + ", role " + std::string(to_string(candidate.role)));
    }
    return AfterCall::answered;
  }

  Error error = std::move(result).error();
  if (error.kind == kInvalidTaskKind) {
    // The task itself is unusable (its payload is not JSON): every agent would refuse it alike,
    // and no agent is at fault. Fail it at once; nobody is paged for a bad request.
    agent.policy().ignored(permit);
    tell_balancer(ReplicaCallResult::ignored);
    log.error_type = error.type;
    log.severity = error.severity;
    log.message = error.message;
    log.decision = "invalid_task";
    outcome_.attempts.push_back(std::move(log));
    emit(EventKind::attempt_failed, candidate.agent, &error, "invalid_task", agent.attempt);
    outcome_.error = std::move(error);
    invalid_task_ = true;
    return AfterCall::invalid_task;
  }
  env.classifier->classify_in_place(error,
                                    Context{{"agent", candidate.agent}, {"task_type", task_.type}});
  tell_balancer(ReplicaBalancer::result_of(error));
  // Kept only where there is another replica to go to: a one-replica agent's failing task (an
  // outage may park 100,000 of them) allocates nothing for it.
  const bool replicated = entry->balancer.replicas() > 1;
  if (replicated && replica >= 0 &&
      std::find(agent.failed_replicas.begin(), agent.failed_replicas.end(), replica) ==
          agent.failed_replicas.end()) {
    agent.failed_replicas.push_back(replica);
  }
  // Another replica, one this task has not failed on and that is not ejected: where a retry (or,
  // for a resource error, the task) can go. (The failed replicas only grow: this ends.)
  const bool other_replica = replicated && replica >= 0 &&
                             entry->balancer.has_untried(env.clock->now(), agent.failed_replicas);
  // The breaker, the retry policy, an open circuit and the retry budget decide, in that order
  // (mend/core/attempt_policy.h).
  const AttemptDecision d = agent.policy().failed(permit, error,
                                                  {.attempt = agent.attempt,
                                                   .previous = agent.previous,
                                                   .deadline = deadline_,
                                                   .other_replica = other_replica},
                                                  *env.clock, *env.random);
  if (d.token != nullptr) retry_token_held_ = d.token;  // given back when the retry answered
  log.error_type = error.type;
  log.severity = error.severity;
  log.status = error.status;
  log.message = error.message;
  entry->last_failure.store(AgentRegistry::Entry::encode_failure(error.type, error.severity),
                            std::memory_order_relaxed);
  if (!worst_ || worst_from_skip_ || error.severity > worst_->severity) {
    worst_ = error;
    worst_agent_ = candidate.agent;
    worst_from_skip_ = false;
  }

  if (d.retry) {
    log.decision = "retry";
    log.delay = d.delay;
    outcome_.attempts.push_back(std::move(log));
    emit(EventKind::retry_scheduled, candidate.agent, &error, error.message, agent.attempt,
         d.delay);
    agent.retried = std::move(error);
    step_ = WorkflowStep{};
    step_.kind = WorkflowStep::Kind::wait;
    step_.delay = d.delay;
    return AfterCall::retry;
  }
  error.stop = d.stop;
  const ErrorCategory category = error.category();
  // Out of resources: the next call goes to another replica when there is one (the balancer
  // picks it).
  if (category == ErrorCategory::resource && other_replica) {
    log.decision = "next_replica";
    outcome_.attempts.push_back(std::move(log));
    emit(EventKind::attempt_failed, candidate.agent, &error, "next_replica", agent.attempt);
    agent.attempt = 0;
    agent.previous = {};
    return AfterCall::next_replica;
  }
  if (category == ErrorCategory::system && can_heal_ && !agent.healed) {
    log.decision = "self_healing";
    outcome_.attempts.push_back(std::move(log));
    emit(EventKind::attempt_failed, candidate.agent, &error, "self_healing", agent.attempt);
    heal_ = std::make_unique<PendingHeal>();
    heal_->symptoms.error_type = error.type;
    heal_->symptoms.health = entry->health.load(std::memory_order_acquire);
    heal_->symptoms.detail = error.message;
    heal_->error = std::move(error);
    step_ = WorkflowStep{};
    step_.kind = WorkflowStep::Kind::heal;
    step_.agent = &entry->info;
    step_.symptoms = &heal_->symptoms;
    return AfterCall::heal;
  }
  log.decision = "fallback";
  outcome_.attempts.push_back(std::move(log));
  emit(EventKind::attempt_failed, candidate.agent, &error, "fallback", agent.attempt);
  outcome_.error = std::move(error);
  return AfterCall::fallback;
}

// The end of a hedged step, for the call that did not win (`loser`: its replica, -1 when it failed
// early and was counted then) and the budget's retry the hedge held.
void WorkflowRun::settle_hedge(AgentTry& agent, PendingHedge& hedge, CallSlot from, int loser,
                               bool answered) {
  const Env& env = workflow_.env_;
  AgentRegistry::Entry* entry = agent.entry;
  RetryBudget* budget = agent.retry.options().budget.get();
  if (loser >= 0) {
    const TimePoint now = env.clock->now();
    if (answered && from == CallSlot::hedge) {
      // Slower than a call sent to another replica after it: its replica hears of it as of a slow
      // call (a failure of the replica), so that a replica that is slow without failing is ejected
      // even though hedges rescue its calls (as the relay counts it).
      entry->balancer.report(loser, ReplicaCallResult::failed, now, now - call_started_);
    } else {
      // The hedge that lost (it started late), or a call whose step ended without an answer: its
      // result would say nothing of its replica.
      entry->balancer.abandon(loser);
    }
    // Counted as a call that did not fail (the budget measures the agent, and it answered), and
    // not as a request: the winner's call counts the request once.
    if (answered && budget != nullptr) budget->record_success(/*retry=*/true);
  }
  if (hedge.token != nullptr) std::exchange(hedge.token, nullptr)->release_retry();
  emit(EventKind::hedged, agent.candidate.agent, nullptr,
       answered && from == CallSlot::hedge ? "won" : "lost", agent.attempt);
}

bool WorkflowRun::after_healing(AgentTry& agent) {
  const std::string& name = agent.candidate.agent;
  std::unique_ptr<PendingHeal> heal = std::move(heal_);
  step_ = WorkflowStep{};  // it pointed into `heal`
  agent.healed = true;
  HealingReport report = heal->report ? std::move(*heal->report) : HealingReport{.agent = name};
  emit(EventKind::self_healing, name, &heal->error,
       report.issue.value_or("no_issue") + ": " +
           (report.recovered ? "recovered" : "not recovered"));
  const bool recovered = report.recovered;
  if (report.escalate) healing_failed_ = true;
  outcome_.healing.push_back(std::move(report));
  if (recovered) {
    workflow_.agents_.set_health(name, outcome_.healing.back().health_after);
    ++agent.attempt;
    agent.previous = {};
    return true;
  }
  // Not recovered: fail over to the chain, and keep the agent out of further plans until a
  // health check says otherwise.
  workflow_.agents_.set_health(name, HealthState::unhealthy);
  outcome_.error = std::move(heal->error);
  return false;
}

bool WorkflowRun::conclude() {
  const WorkflowOptions& options = workflow_.options_;
  if (!answered_) {
    if (options.degraded != nullptr) {
      outcome_.status = OutcomeStatus::degraded;
      outcome_.answered_by = "degraded_service";
      outcome_.answer = options.degraded->answer(task_.type, task_.fields).to_json();
      emit(EventKind::degraded_answer, task_.agent, nullptr, task_.type);
    } else {
      outcome_.status = OutcomeStatus::failed;
      if (!outcome_.error) {
        // Every agent was skipped: nothing failed, but nothing could be tried either.
        outcome_.error = Error::classified_as(ErrorType::service_unavailable, Severity::high,
                                              "no agent available for task " + task_.id);
        if (!worst_) {
          worst_ = outcome_.error;
          worst_agent_ = task_.agent;
        }
      }
    }
  }

  // A low or medium error that retrying (or healing) the primary resolved is only logged;
  // anything else escalates at the level of the most severe error: high and critical always
  // do, as the specification's "immediate" and "emergency" escalations.
  if (!worst_) return false;
  if (primary_answered_after_retry_ && !healing_failed_ && worst_->severity <= Severity::medium) {
    EscalationTaken logged;
    logged.level = worst_->severity;
    logged.action = "logged";
    logged.retry_recommended = true;
    outcome_.escalation = std::move(logged);
    return false;
  }
  const Severity level = EscalationPolicy::effective_level(worst_->severity, /*resolved=*/false);
  if (options.escalations == nullptr) {
    // Decided but not carried out: no sink was configured.
    outcome_.escalation = EscalationTaken::planned(EscalationPolicy().plan(level));
    return false;
  }
  escalation_ = std::make_unique<PendingEscalation>();
  EscalationRequest& request = escalation_->request;
  request.level = level;
  request.error = *worst_;
  request.agent = worst_agent_;
  request.task_id = task_.id;
  request.task_type = task_.type;
  request.labels = {{"agent", worst_agent_},
                    {"error_type", std::string(to_string(worst_->type))},
                    {"task_type", task_.type},
                    {"severity", std::string(to_string(level))}};
  step_ = WorkflowStep{};
  step_.kind = WorkflowStep::Kind::escalate;
  step_.escalation = &request;
  return true;
}

void WorkflowRun::after_escalation() {
  std::unique_ptr<PendingEscalation> escalation = std::move(escalation_);
  step_ = WorkflowStep{};  // it pointed into `escalation`
  std::optional<Result<EscalationTaken>>& taken = escalation->taken;
  if (taken && taken->ok()) {
    outcome_.escalation = std::move(**taken);
    emit(EventKind::escalated, worst_agent_, &*worst_,
         outcome_.escalation->record.empty() ? outcome_.escalation->action
                                             : outcome_.escalation->record);
  } else {
    outcome_.escalation_error =
        taken ? taken->error().describe() : "the driver gave no escalation result";
  }
}

EscalationTaken EscalationTaken::planned(const EscalationPlan& plan) {
  EscalationTaken t;
  t.level = plan.level;
  t.action = plan.action;
  t.retry_recommended = plan.retry_recommended;
  t.sla = plan.sla;
  t.channel = plan.channel;
  t.assignee = plan.assignee;
  return t;
}

std::string Outcome::to_json() const {
  detail::JsonWriter w;
  w.begin_object();
  w.key("task_id").string(task_id);
  w.key("task_type").string(task_type);
  w.key("primary_agent").string(primary_agent);
  w.key("status").string(to_string(status));
  w.key("answered_by").string(answered_by);
  w.key("answer");
  if (answer.empty()) {
    w.null();
  } else {
    // Agents' answers are JSON by the protocol; the invoker has checked it.
    w.raw(answer);
  }
  w.key("elapsed_seconds").number(to_seconds(elapsed));
  w.key("attempts").begin_array();
  for (const auto& a : attempts) {
    w.begin_object();
    w.key("agent").string(a.agent);
    w.key("replica").number(std::int64_t{a.replica});
    w.key("attempt").number(std::int64_t{a.attempt});
    w.key("succeeded").boolean(a.succeeded);
    if (!a.succeeded) {
      w.key("error_type").string(to_string(a.error_type));
      w.key("category").string(to_string(category_of(a.error_type)));
      w.key("severity").string(to_string(a.severity));
      if (a.status) w.key("status").number(std::int64_t{*a.status});
      w.key("message").string(a.message);
    }
    w.key("decision").string(a.decision);
    w.key("delay_seconds").number(to_seconds(a.delay));
    if (a.hedge_replica >= 0) {
      w.key("hedge_replica").number(std::int64_t{a.hedge_replica});
      w.key("hedge_won").boolean(a.hedge_won);
    }
    w.end_object();
  }
  w.end_array();
  w.key("skipped").begin_array();
  for (const auto& s : skipped) {
    w.begin_object();
    w.key("agent").string(s.agent);
    w.key("role").string(to_string(s.role));
    w.key("reason").string(to_string(s.reason));
    w.end_object();
  }
  w.end_array();
  w.key("healing").begin_array();
  for (const auto& h : healing) w.raw(h.to_json());
  w.end_array();
  if (error) {
    w.key("error").begin_object();
    w.key("type").string(to_string(error->type));
    w.key("severity").string(to_string(error->severity));
    w.key("message").string(error->message);
    w.end_object();
  }
  if (escalation) {
    const EscalationTaken& e = *escalation;
    w.key("escalation").begin_object();
    w.key("level").string(to_string(e.level));
    w.key("action").string(e.action);
    w.key("retry_recommended").boolean(e.retry_recommended);
    if (e.pending) {
      w.key("pending").boolean(true);
      w.key("fingerprint").string(e.fingerprint);
    }
    if (!e.record.empty()) {
      // "id" and "number" as the record itself has them (EscalationRecord::to_json); "record"
      // and "record_id" are their older names, kept for clients that read them.
      w.key("id").string(e.record);
      w.key("number").number(e.record_id);
      w.key("record").string(e.record);
      w.key("record_id").number(e.record_id);
      w.key("fingerprint").string(e.fingerprint);
      w.key("kind").string(to_string(e.kind));
      w.key("created").boolean(e.created);
      w.key("occurrences").number(e.occurrences);
    }
    if (e.sla) w.key("sla_seconds").number(to_seconds(*e.sla));
    if (!e.channel.empty()) w.key("channel").string(e.channel);
    if (!e.assignee.empty()) w.key("assignee").string(e.assignee);
    if (!e.war_room_url.empty()) w.key("war_room_url").string(e.war_room_url);
    w.end_object();
  }
  if (!escalation_error.empty()) w.key("escalation_error").string(escalation_error);
  w.end_object();
  return std::move(w).str();
}

}  // namespace mend
