#include "mend/workflow.h"

#include <exception>
#include <utility>

#include "json_writer.h"

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
        run->provide_call_result(detail::guarded(
            [&] { return invoker.invoke(*step.agent, step.replica, run->task(), step.attempt); }));
        break;
      case WorkflowStep::Kind::wait:
        env_.sleeper->sleep_for(step.delay, {});
        break;
      case WorkflowStep::Kind::heal:
        // start() enabled healing only with both a healer and operations.
        // heal() turns failures of the operations and strategies into its report.
        run->provide_healing(
            options_.healer->heal(step.agent->name, step.symptoms, *operations, env_.clock->now()));
        break;
      case WorkflowStep::Kind::escalate:
        run->provide_escalation(
            detail::guarded([&] { return options_.escalations->escalate(step.escalation); }));
        break;
      case WorkflowStep::Kind::done: {
        Outcome outcome = run->take_outcome();
        if (options_.journal != nullptr) options_.journal->record(run->task(), outcome);
        return outcome;
      }
    }
  }
}

WorkflowRun::WorkflowRun(const Workflow& workflow, Task task, bool can_heal)
    : workflow_(workflow), task_(std::move(task)), can_heal_(can_heal) {
  handle_ = script().handle;
}

WorkflowRun::~WorkflowRun() {
  if (retry_token_held_ != nullptr) retry_token_held_->release_retry();
  if (call_agent_ != nullptr) {
    workflow_.agents_.release(call_agent_->info.name);
    call_agent_->breaker.on_ignored(call_permit_);
  }
  if (handle_) handle_.destroy();
}

const WorkflowStep& WorkflowRun::next() {
  auto h = std::coroutine_handle<Script::promise_type>::from_address(handle_.address());
  if (!h.done()) h.resume();
  if (h.promise().error) std::rethrow_exception(std::exchange(h.promise().error, nullptr));
  if (h.done()) step_ = WorkflowStep{};  // kind done
  return step_;
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

WorkflowRun::Script WorkflowRun::script() {
  const Workflow& wf = workflow_;
  const Env& env = wf.env_;
  AgentRegistry& agents = wf.agents_;
  const TimePoint started = env.clock->now();
  std::optional<TimePoint> deadline;
  if (task_.deadline) deadline = started + *task_.deadline;

  outcome_.task_id = task_.id;
  outcome_.task_type = task_.type;
  outcome_.primary_agent = task_.agent;

  std::optional<Error> worst;  // the most severe failure: it decides the escalation level
  std::string worst_agent;
  bool healing_failed = false;  // self-healing asked for escalation
  bool answered = false;
  bool invalid_task = false;
  bool primary_answered_after_retry = false;
  int agents_tried = 0;

  for (const Candidate& candidate : agents.plan(task_.agent, task_.capabilities)) {
    if (agents_tried >= wf.options_.max_agents) break;
    if (deadline && env.clock->now() >= *deadline) {
      // The task's time is up: no further agent is called (the degraded answer still serves).
      emit(EventKind::attempt_failed, candidate.agent, nullptr, "deadline_exceeded");
      break;
    }
    auto skip = [&](SkipReason reason) {
      outcome_.skipped.push_back({candidate.agent, candidate.role, reason});
      emit(EventKind::agent_skipped, candidate.agent, nullptr, std::string(to_string(reason)));
    };
    if (auto why = agents.unavailable_reason(candidate.agent)) {
      skip(*why);
      continue;
    }
    AgentRegistry::Entry* entry = agents.find(candidate.agent);
    ++agents_tried;
    const RetryOptions& retry_options = wf.retry_options_for(candidate.agent);
    const RetryPolicy& retry_policy = wf.retry_policy_for(candidate.agent);
    RetryBudget* budget = retry_options.budget.get();
    Context context{{"agent", candidate.agent}, {"task_type", task_.type}};
    int replica = 0;
    int attempt = 0;
    int calls = 0;
    bool healed = false;
    Duration previous{};
    std::optional<Error> retried;  // the failure whose retry is about to be made
    // Before the first call, an agent that cannot be called is a skip. Before a retry (another
    // task opened the circuit, or took the last slot, during the wait) the retry is refused:
    // the failure it was for becomes the agent's last word, and the plan moves on.
    auto refuse = [&](SkipReason reason, StopReason stop) {
      if (calls == 0) {
        skip(reason);
        return;
      }
      if (!outcome_.attempts.empty()) outcome_.attempts.back().decision = to_string(reason);
      if (retried) {
        retried->stop = stop;
        emit(EventKind::attempt_failed, candidate.agent, &*retried, std::string(to_string(reason)),
             attempt);
        outcome_.error = std::move(*retried);
      }
    };
    for (;;) {
      const CircuitBreaker::Permit permit = entry->breaker.try_acquire(*env.clock);
      if (!permit.allowed()) {
        refuse(SkipReason::circuit_open, StopReason::circuit_open);
        break;
      }
      if (!agents.try_reserve(candidate.agent)) {
        entry->breaker.on_ignored(permit);
        refuse(SkipReason::no_capacity, StopReason::bulkhead_full);
        break;
      }
      step_ = WorkflowStep{};
      step_.kind = WorkflowStep::Kind::call;
      step_.agent = &entry->info;
      step_.replica = replica;
      step_.attempt = attempt;
      call_result_.reset();
      call_agent_ = entry;
      call_permit_ = permit;
      co_yield 0;
      call_agent_ = nullptr;
      agents.release(candidate.agent);
      if (retry_token_held_ != nullptr) {
        std::exchange(retry_token_held_, nullptr)->release_retry();
      }
      ++calls;
      Result<std::string> result = call_result_
                                       ? std::move(*call_result_)
                                       : Result<std::string>(Error::classified_as(
                                             ErrorType::processing_failed, Severity::medium,
                                             "the driver gave no call result"));
      call_result_.reset();

      AttemptLog log;
      log.agent = candidate.agent;
      log.replica = replica;
      log.attempt = attempt;
      if (result.ok()) {
        entry->breaker.on_success(permit, *env.clock);
        if (budget != nullptr) budget->record_success();
        log.succeeded = true;
        log.decision = "answered";
        outcome_.attempts.push_back(std::move(log));
        outcome_.answered_by = candidate.agent;
        outcome_.answer = std::move(*result);
        answered = true;
        if (candidate.role == CandidateRole::primary) {
          primary_answered_after_retry = calls > 1;
          outcome_.status =
              calls > 1 ? OutcomeStatus::succeeded_after_retry : OutcomeStatus::succeeded;
        } else {
          outcome_.status = OutcomeStatus::fallback;
          emit(EventKind::fallback_used, candidate.agent, nullptr,
               "primary " + task_.agent + ", role " + std::string(to_string(candidate.role)));
        }
        break;
      }

      Error error = std::move(result).error();
      if (error.kind == kInvalidTaskKind) {
        // The task itself is unusable (its payload is not JSON): every agent would refuse it
        // alike, and no agent is at fault. Fail it at once; nobody is paged for a bad request.
        entry->breaker.on_ignored(permit);
        log.error_type = error.type;
        log.severity = error.severity;
        log.message = error.message;
        log.decision = "invalid_task";
        outcome_.attempts.push_back(std::move(log));
        emit(EventKind::attempt_failed, candidate.agent, &error, "invalid_task", attempt);
        outcome_.error = std::move(error);
        invalid_task = true;
        break;
      }
      env.classifier->classify_in_place(error, context);
      if (entry->breaker.options().ignored.contains(error.type)) {
        entry->breaker.on_ignored(permit);
      } else {
        entry->breaker.on_failure(permit, *env.clock);
      }
      log.error_type = error.type;
      log.severity = error.severity;
      log.status = error.status;
      log.message = error.message;
      if (!worst || error.severity > worst->severity) {
        worst = error;
        worst_agent = candidate.agent;
      }

      // Transient errors, and retryable resource errors, are retried with backoff.
      RetryDecision d = retry_policy.decide(attempt, error, env.clock->now(), deadline, previous,
                                            env.random->next_unit());
      const CircuitState circuit = entry->breaker.state();
      if (d.retry && (circuit == CircuitState::open || circuit == CircuitState::isolated)) {
        // This failure opened the circuit: retrying would only be refused after the wait.
        d = {false, StopReason::circuit_open};
      }
      if (budget != nullptr && retry_options.retryable.contains(error.type)) {
        budget->record_failure();
        if (d.retry) {
          if (budget->try_acquire_retry()) {
            retry_token_held_ = budget;  // given back when the retry's call has answered
          } else {
            d = {false, StopReason::retry_budget_exhausted};
          }
        }
      }
      if (d.retry) {
        log.decision = "retry";
        log.delay = d.delay;
        outcome_.attempts.push_back(std::move(log));
        emit(EventKind::retry_scheduled, candidate.agent, &error, error.message, attempt, d.delay);
        retried = error;
        step_ = WorkflowStep{};
        step_.kind = WorkflowStep::Kind::wait;
        step_.delay = d.delay;
        co_yield 0;
        previous = d.delay;
        ++attempt;
        continue;
      }
      error.stop = d.stop;
      const ErrorCategory category = error.category();
      if (category == ErrorCategory::resource && replica + 1 < entry->info.replicas()) {
        log.decision = "next_replica";
        outcome_.attempts.push_back(std::move(log));
        emit(EventKind::attempt_failed, candidate.agent, &error, "next_replica", attempt);
        ++replica;
        attempt = 0;
        previous = {};
        continue;
      }
      if (category == ErrorCategory::system && can_heal_ && !healed) {
        log.decision = "self_healing";
        outcome_.attempts.push_back(std::move(log));
        emit(EventKind::attempt_failed, candidate.agent, &error, "self_healing", attempt);
        step_ = WorkflowStep{};
        step_.kind = WorkflowStep::Kind::heal;
        step_.agent = &entry->info;
        step_.symptoms.error_type = error.type;
        step_.symptoms.health = entry->health.load(std::memory_order_acquire);
        step_.symptoms.detail = error.message;
        healing_.reset();
        co_yield 0;
        healed = true;
        HealingReport report =
            healing_ ? std::move(*healing_) : HealingReport{.agent = candidate.agent};
        healing_.reset();
        emit(EventKind::self_healing, candidate.agent, &error,
             report.issue.value_or("no_issue") + ": " +
                 (report.recovered ? "recovered" : "not recovered"));
        const bool recovered = report.recovered;
        if (report.escalate) healing_failed = true;
        outcome_.healing.push_back(std::move(report));
        if (recovered) {
          agents.set_health(candidate.agent, outcome_.healing.back().health_after);
          ++attempt;
          previous = {};
          continue;
        }
        // Not recovered: fail over to the chain, and keep the agent out of further plans until
        // a health check says otherwise.
        agents.set_health(candidate.agent, HealthState::unhealthy);
        outcome_.error = std::move(error);
        break;
      }
      log.decision = "fallback";
      outcome_.attempts.push_back(std::move(log));
      emit(EventKind::attempt_failed, candidate.agent, &error, "fallback", attempt);
      outcome_.error = std::move(error);
      break;
    }
    if (answered || invalid_task) break;
  }

  if (invalid_task) {
    outcome_.status = OutcomeStatus::failed;
    outcome_.elapsed = env.clock->now() - started;
    emit(EventKind::task_finished, task_.agent, nullptr, "failed: invalid_task");
    co_return;
  }
  if (!answered) {
    if (wf.options_.degraded != nullptr) {
      outcome_.status = OutcomeStatus::degraded;
      outcome_.answered_by = "degraded_service";
      outcome_.answer = wf.options_.degraded->answer(task_.type, task_.fields).to_json();
      emit(EventKind::degraded_answer, task_.agent, nullptr, task_.type);
    } else {
      outcome_.status = OutcomeStatus::failed;
      if (!outcome_.error) {
        // Every agent was skipped: nothing failed, but nothing could be tried either.
        outcome_.error = Error::classified_as(ErrorType::service_unavailable, Severity::high,
                                              "no agent available for task " + task_.id);
        worst = outcome_.error;
        worst_agent = task_.agent;
      }
    }
  }

  // A low or medium error that retrying (or healing) the primary resolved is only logged;
  // anything else escalates at the level of the most severe error: high and critical always
  // do, as the seed's "immediate" and "emergency" escalations.
  if (worst) {
    if (primary_answered_after_retry && !healing_failed && worst->severity <= Severity::medium) {
      EscalationTaken logged;
      logged.level = worst->severity;
      logged.action = "logged";
      logged.retry_recommended = true;
      outcome_.escalation = std::move(logged);
    } else {
      EscalationRequest request;
      request.level = EscalationPolicy::effective_level(worst->severity, /*resolved=*/false);
      request.error = *worst;
      request.agent = worst_agent;
      request.task_id = task_.id;
      request.task_type = task_.type;
      request.labels = {{"agent", worst_agent},
                        {"error_type", std::string(to_string(worst->type))},
                        {"task_type", task_.type},
                        {"severity", std::string(to_string(request.level))}};
      if (wf.options_.escalations != nullptr) {
        step_ = WorkflowStep{};
        step_.kind = WorkflowStep::Kind::escalate;
        step_.escalation = request;
        escalation_.reset();
        co_yield 0;
        if (escalation_ && escalation_->ok()) {
          outcome_.escalation = std::move(**escalation_);
          emit(EventKind::escalated, worst_agent, &*worst,
               outcome_.escalation->record.empty() ? outcome_.escalation->action
                                                   : outcome_.escalation->record);
        } else {
          outcome_.escalation_error = escalation_ ? escalation_->error().describe()
                                                  : "the driver gave no escalation result";
        }
        escalation_.reset();
      } else {
        // Decided but not carried out: no sink was configured.
        outcome_.escalation = EscalationTaken::planned(EscalationPolicy().plan(request.level));
      }
    }
  }
  outcome_.elapsed = env.clock->now() - started;
  emit(EventKind::task_finished, task_.agent, nullptr, std::string(to_string(outcome_.status)));
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
    if (!e.record.empty()) {
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
