// End to end: agents served over real loopback HTTP fail in each of the five categories, and the
// whole of mend (HTTP client, workflow, self-healing over the agents' admin hooks, SQLite store,
// escalator, outbox, receivers) answers as DESIGN.md §1 and the specification say. Time is a manual
// clock: backoff waits are exact and instant, SLA clocks move by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <thread>

#include "loopback.h"
#include "mend/runtime/async_workflow.h"
#include "mend/store/journal.h"

namespace mend::e2e {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Duration secs(double s) {
  return from_seconds(s);
}

class WorkflowE2E : public ::testing::Test {
 protected:
  WorkflowE2E() {
    env.clock = &clock;
    env.sleeper = &sleeper;
    env.random = &random;
    env.events = &events;
    add({.name = "senior-backend-developer",
         .capabilities = {"backend"},
         .endpoints = {backend.url(), backend_replica.url()}});
    add({.name = "senior-full-stack-developer",
         .capabilities = {"backend", "frontend"},
         .endpoints = {fullstack.url()}});
    add({.name = "senior-ai-engineer", .capabilities = {"ai"}, .endpoints = {ai.url()}});
    add({.name = "agentzero-coordinator", .generalist = true, .endpoints = {coordinator.url()}});
    agents.set_chains(default_fallback_chains());
    store = open_store(dir.file("mend.db"));
    escalator = std::make_unique<Escalator>(*store, clock, test_escalator_options());
    dispatcher = std::make_unique<NotificationDispatcher>(*store, clock, random);
    add_receivers(*dispatcher, http, sink);
    WorkflowOptions o;
    o.degraded = &degraded;
    o.healer = &healer;
    o.escalations = escalator.get();
    journal = std::make_unique<StoreTaskJournal>(*store, clock);
    o.journal = journal.get();
    workflow = std::make_unique<Workflow>(agents, o, env);
  }
  void add(AgentInfo info) { ASSERT_TRUE(agents.add(std::move(info)).ok()); }

  Task task(std::string id = "task-1") {
    Task t;
    t.id = std::move(id);
    t.type = "code_review";
    t.agent = "senior-backend-developer";
    t.payload = R"({"content":"int main() { return 0; }\n"})";
    t.fields["content"] = "int main() { return 0; }\n";
    return t;
  }
  Outcome run(const Task& t) { return workflow->run(t, invoker, &operations); }
  std::vector<std::string> decisions(const Outcome& o) {
    std::vector<std::string> out;
    for (const auto& a : o.attempts) out.push_back(a.agent + ":" + a.decision);
    return out;
  }
  void deliver() {
    DeliveryReport r = dispatcher->deliver_due();
    EXPECT_EQ(r.dead, 0);
    EXPECT_EQ(r.retry_scheduled, 0);
  }

  ManualClock clock;
  ManualSleeper sleeper{clock};
  FixedRandom random{0.5};  // the jitter's midpoint: delays are exactly the error_scaled formula
  RecordingEventSink events;
  Env env;
  IoThread io;
  HttpClient http{io.executor()};
  HttpAgentInvoker invoker{http};
  TestAgent backend{"senior-backend-developer"};
  TestAgent backend_replica{"senior-backend-developer-2"};
  TestAgent fullstack{"senior-full-stack-developer"};
  TestAgent ai{"senior-ai-engineer"};
  TestAgent coordinator{"agentzero-coordinator"};
  NotificationSink sink;
  AgentRegistry agents;
  HttpAgentOperations operations{http, agents, clock, sleeper};
  TempDir dir;
  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<Escalator> escalator;
  std::unique_ptr<NotificationDispatcher> dispatcher;
  std::unique_ptr<StoreTaskJournal> journal;
  DegradedService degraded;
  SelfHealer healer;
  std::unique_ptr<Workflow> workflow;
};

// transient -> retry with backoff; resolved by retrying: logged only.
TEST_F(WorkflowE2E, TransientFailuresAreRetriedAndOnlyLogged) {
  // The agent warms up as a whole: a retry goes to its other replica, which is warming up too.
  std::atomic<int> agent_calls{0};
  auto warming_up = [&agent_calls](int) {
    if (agent_calls++ < 2) {
      return agent_error(503, "temporary_unavailable", "warming up", std::nullopt);
    }
    return json_response(200, {{"review", "looks good"}});
  };
  backend.on_task(warming_up);
  backend_replica.on_task(warming_up);
  Outcome out = run(task());
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  EXPECT_EQ(out.answered_by, "senior-backend-developer");
  EXPECT_THAT(out.answer, HasSubstr("looks good"));
  ASSERT_EQ(out.attempts.size(), 3u);
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::temporary_unavailable);
  EXPECT_EQ(out.attempts[0].severity, Severity::medium);
  EXPECT_EQ(out.attempts[0].status, 503);
  // The first retry goes to the other replica at once (it has not failed); the second, with both
  // replicas tried, waits out the backoff: base 1 s * 2^1.
  EXPECT_EQ(out.attempts[0].delay, Duration::zero());
  EXPECT_EQ(out.attempts[1].delay, secs(2));
  EXPECT_THAT(sleeper.sleeps(), ElementsAre(Duration::zero(), secs(2)));
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "logged");
  EXPECT_TRUE(store->records({}).empty());
  deliver();
  EXPECT_TRUE(sink.received().empty());
  // The journal keeps what happened, for after a restart.
  std::vector<JournalEntry> entries = store->journal(10);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].task_id, "task-1");
  EXPECT_EQ(entries[0].status, "succeeded_after_retry");
  EXPECT_EQ(entries[0].attempts, 3);
  EXPECT_EQ(nlohmann::json::parse(entries[0].outcome_json)["attempts"].size(), 3u);
  EXPECT_EQ(journal->failures(), 0);
}

// transient, exhausted: real timeouts detected by the client, retried 3 times (x1.5 for
// timeouts), then the chain's next agent; medium: a ticket and the team channel.
TEST_F(WorkflowE2E, TimeoutsExhaustTheRetriesThenFallBackAndOpenATicket) {
  auto slow = [](int) {
    std::this_thread::sleep_for(milliseconds(300));  // a slow agent, past the call's timeout
    return json_response(200, {{"late", true}});
  };
  backend.on_task(slow);
  backend_replica.on_task(slow);  // both replicas: the retries go to each in turn
  Task t = task();
  t.attempt_timeout = milliseconds(100);
  Outcome out = run(t);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.answered_by, "senior-full-stack-developer");
  EXPECT_THAT(decisions(out),
              ElementsAre("senior-backend-developer:retry", "senior-backend-developer:retry",
                          "senior-backend-developer:retry", "senior-backend-developer:fallback",
                          "senior-full-stack-developer:answered"));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(out.attempts[i].error_type, ErrorType::network_timeout) << i;
    EXPECT_EQ(out.attempts[i].severity, Severity::medium) << i;
  }
  EXPECT_THAT(sleeper.sleeps(), ElementsAre(secs(1.5), secs(3), secs(6)));
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "notified_and_ticketed");
  EXPECT_EQ(out.escalation->level, Severity::medium);
  EXPECT_EQ(out.escalation->channel, "engineering");
  EXPECT_EQ(out.escalation->sla, hours(24));
  EXPECT_THAT(out.escalation->record, ::testing::StartsWith("TKT-"));
  deliver();
  auto hooks = sink.at("/webhook");
  ASSERT_EQ(hooks.size(), 1u);
  EXPECT_EQ(hooks[0].body["event"], "trigger");
  EXPECT_EQ(hooks[0].body["error_type"], "network_timeout");
  EXPECT_EQ(hooks[0].body["record"], out.escalation->record);
}

// resource -> another replica of the same agent; high: on-call alerted, ticket assigned to
// on-call, review scheduled, SLA 2 h.
TEST_F(WorkflowE2E, ResourceFailuresMoveToAnotherReplicaAndAlertOnCall) {
  backend.on_task([](int) { return agent_error(507, "memory_exhausted", "heap is full"); });
  Outcome out = run(task());
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  EXPECT_EQ(out.answered_by, "senior-backend-developer");
  EXPECT_EQ(backend_replica.task_calls(), 1);
  ASSERT_EQ(out.attempts.size(), 2u);
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::memory_exhausted);
  EXPECT_EQ(out.attempts[0].severity, Severity::high);
  EXPECT_EQ(out.attempts[0].decision, "next_replica");
  EXPECT_EQ(out.attempts[1].replica, 1);
  EXPECT_TRUE(sleeper.sleeps().empty());  // not retryable: no backoff, another resource
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "high_priority_alert");
  EXPECT_EQ(out.escalation->assignee, "on-call-engineer");
  EXPECT_EQ(out.escalation->sla, hours(2));
  std::optional<EscalationRecord> r = store->record(out.escalation->record_id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->priority, "high");
  EXPECT_TRUE(r->review_at.has_value());
  deliver();
  EXPECT_EQ(sink.at("/webhook").size(), 1u);
  ASSERT_EQ(sink.at("/slack").size(), 1u);
  EXPECT_THAT(sink.at("/slack")[0].body["text"].get<std::string>(), HasSubstr("opened"));
}

// logic -> fallback logic, never a blind retry; low, unresolved -> medium ticket.
TEST_F(WorkflowE2E, LogicFailuresFallBackWithoutRetrying) {
  backend.on_task([](int) { return agent_error(422, "validation_failed", "diff is empty"); });
  Outcome out = run(task());
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.answered_by, "senior-full-stack-developer");
  EXPECT_EQ(backend.task_calls(), 1);
  EXPECT_THAT(decisions(out), ElementsAre("senior-backend-developer:fallback",
                                          "senior-full-stack-developer:answered"));
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::validation_failed);
  EXPECT_EQ(out.attempts[0].severity, Severity::low);
  EXPECT_TRUE(sleeper.sleeps().empty());
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->level, Severity::medium);  // the specification's low -> medium
  EXPECT_EQ(out.escalation->action, "notified_and_ticketed");
  ASSERT_TRUE(events.count(EventKind::fallback_used) == 1u);
}

// system -> self-healing of that agent (its admin hook), a health check, then it answers.
TEST_F(WorkflowE2E, SystemFailuresHealTheAgentThroughItsAdminHookThenItAnswers) {
  std::atomic<bool> connected{false};
  backend.set_health("unhealthy");
  backend_replica.set_health("unhealthy");
  // Both replicas share the database: the call after healing goes to the other replica.
  auto database_user = [&](int) {
    if (!connected) return agent_error(500, "database_error", "connection to postgres lost");
    return json_response(200, {{"review", "done after reconnect"}});
  };
  backend.on_task(database_user);
  backend_replica.on_task(database_user);
  backend.on_admin("reconnect-database", [&] {
    connected = true;
    backend.set_health("healthy");
  });
  Outcome out = run(task());
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  EXPECT_EQ(out.answered_by, "senior-backend-developer");
  EXPECT_THAT(out.answer, HasSubstr("done after reconnect"));
  EXPECT_THAT(backend.admin_calls(), ElementsAre("reconnect-database"));
  ASSERT_EQ(out.healing.size(), 1u);
  EXPECT_EQ(out.healing[0].issue, "database_connection_lost");
  EXPECT_TRUE(out.healing[0].recovered);
  EXPECT_EQ(out.healing[0].health_after, HealthState::healthy);
  EXPECT_THAT(decisions(out), ElementsAre("senior-backend-developer:self_healing",
                                          "senior-backend-developer:answered"));
  // database_error is high: on-call hears of it even though healing worked.
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "high_priority_alert");
}

// system, not healable: graceful restart, 60 s of readiness polls (on the manual clock), force
// restart, still unhealthy -> failover to the chain, the agent is marked unhealthy, escalation.
TEST_F(WorkflowE2E, SystemFailuresThatHealingCannotFixFailOverAndEscalate) {
  backend.set_health("unhealthy");
  backend_replica.set_health("unhealthy");
  backend.on_task([](int) { return agent_error(503, "service_unavailable", "wedged"); });
  Outcome out = run(task());
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.answered_by, "senior-full-stack-developer");
  ASSERT_EQ(out.healing.size(), 1u);
  EXPECT_EQ(out.healing[0].issue, "service_unresponsive");
  EXPECT_FALSE(out.healing[0].recovered);
  EXPECT_TRUE(out.healing[0].escalate);
  EXPECT_THAT(backend.admin_calls(), ElementsAre("restart", "restart"));  // graceful, then force
  EXPECT_GE(clock.now() - TimePoint(hours(1000)), seconds(60));  // waited for readiness 60 s
  EXPECT_EQ(agents.find("senior-backend-developer")->health.load(), HealthState::unhealthy);
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->level, Severity::high);
  // The next task fails over at once, without calling the unhealthy agent.
  const int calls = backend.task_calls();
  Outcome next = run(task("task-2"));
  EXPECT_EQ(backend.task_calls(), calls);
  ASSERT_EQ(next.skipped.size(), 1u);
  EXPECT_EQ(next.skipped[0].reason, SkipReason::unhealthy);
}

// external -> circuit breaker + fallback service: five failures open the circuit (the
// specification's threshold); the sixth task never calls the agent; one ticket counts them.
TEST_F(WorkflowE2E, ExternalFailuresOpenTheBreakerAndFallBack) {
  // The service behind the agent is down for both its replicas (tasks alternate between them).
  auto github_down = [](int) {
    return agent_error(502, "external_service_down", "github is down");
  };
  backend.on_task(github_down);
  backend_replica.on_task(github_down);
  std::int64_t record = 0;
  for (int i = 0; i < 5; ++i) {
    Outcome out = run(task("task-" + std::to_string(i)));
    EXPECT_EQ(out.status, OutcomeStatus::fallback);
    EXPECT_EQ(out.attempts[0].error_type, ErrorType::external_service_down);
    EXPECT_EQ(out.attempts[0].decision, "fallback");
    ASSERT_TRUE(out.escalation.has_value());
    EXPECT_EQ(out.escalation->level, Severity::high);  // external_service_down's default
    EXPECT_EQ(out.escalation->action, "high_priority_alert");
    EXPECT_EQ(out.escalation->channel, "on-call");
    if (i == 0) record = out.escalation->record_id;
    EXPECT_EQ(out.escalation->record_id, record);
    EXPECT_EQ(out.escalation->occurrences, i + 1);
  }
  EXPECT_EQ(backend.task_calls() + backend_replica.task_calls(), 5);
  EXPECT_EQ(agents.find("senior-backend-developer")->breaker.state(), CircuitState::open);
  Outcome out = run(task("task-5"));
  EXPECT_EQ(backend.task_calls() + backend_replica.task_calls(), 5);
  ASSERT_EQ(out.skipped.size(), 1u);
  EXPECT_EQ(out.skipped[0].reason, SkipReason::circuit_open);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  // The outage goes on while the circuit is open: the task that skipped it is one more
  // occurrence of the same record, not silence.
  EXPECT_EQ(store->records({}).size(), 1u);
  EXPECT_EQ(store->record(record)->occurrences, 6);
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->record_id, record);
}

// critical (the agent says so): an incident, the emergency page (PagerDuty Events v2) and a war
// room; SLA 15 min, re-escalated when nobody acknowledges it.
TEST_F(WorkflowE2E, CriticalFailuresOpenAnIncidentPageAndWarRoom) {
  backend.on_task([](int) {
    return agent_error(401, "authentication_failed", "signing key revoked", std::nullopt,
                       "critical");
  });
  Outcome out = run(task());
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::authentication_failed);
  EXPECT_EQ(out.attempts[0].severity, Severity::critical);
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "critical_incident");
  EXPECT_EQ(out.escalation->kind, RecordKind::incident);
  EXPECT_THAT(out.escalation->record, ::testing::StartsWith("INC-"));
  EXPECT_EQ(out.escalation->war_room_url, "https://war-room.test/" + out.escalation->record);
  EXPECT_EQ(out.escalation->sla, minutes(15));
  EXPECT_EQ(store->journal(1).at(0).record_id, out.escalation->record_id);
  deliver();
  auto pages = sink.at("/pagerduty");
  ASSERT_EQ(pages.size(), 1u);
  EXPECT_EQ(pages[0].body["event_action"], "trigger");
  EXPECT_EQ(pages[0].body["routing_key"], "test-routing-key");
  EXPECT_EQ(pages[0].body["payload"]["severity"], "critical");
  EXPECT_EQ(pages[0].body["links"][0]["href"], out.escalation->war_room_url);
  const std::string dedup_key = pages[0].body["dedup_key"];

  clock.advance(minutes(15));
  ASSERT_EQ(escalator->check_slas()->size(), 1u);
  deliver();
  pages = sink.at("/pagerduty");
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[1].body["dedup_key"], dedup_key);  // the same alert, escalated
  ASSERT_TRUE(escalator->acknowledge(out.escalation->record_id, "alice").ok());
  deliver();
  pages = sink.at("/pagerduty");
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[2].body["event_action"], "acknowledge");
  EXPECT_EQ(pages[2].body["dedup_key"], dedup_key);
}

// When every agent fails, the degraded service answers with real basic checks.
TEST_F(WorkflowE2E, EveryAgentDownGivesTheDegradedAnswer) {
  for (TestAgent* a : {&backend, &backend_replica, &fullstack, &ai, &coordinator}) {
    a->on_task([](int) { return agent_error(500, "processing_failed", "model crashed"); });
  }
  Task t = task();
  t.fields["content"] = "def f(:\n  return (1\n";
  Outcome out = run(t);
  EXPECT_EQ(out.status, OutcomeStatus::degraded);
  nlohmann::json answer = nlohmann::json::parse(out.answer);
  EXPECT_EQ(answer["status"], "degraded");
  EXPECT_EQ(answer["basic_checks"]["syntax_valid"], false);
  EXPECT_EQ(answer["basic_checks"]["line_count"], 2);
  nlohmann::json outcome = nlohmann::json::parse(out.to_json());
  EXPECT_EQ(outcome["status"], "degraded");
  EXPECT_EQ(outcome["attempts"].size(), 4u);
}

// The same machine on Asio coroutines: real timers, real sockets.
TEST_F(WorkflowE2E, TheAsyncDriverRunsTheSameWorkflow) {
  RetryOptions fast;
  fast.backoff.base = milliseconds(5);
  WorkflowOptions o;
  o.retry = fast;
  o.degraded = &degraded;
  o.escalations = escalator.get();
  Env real = env;
  real.clock = &SystemClock::instance();
  Workflow async_workflow(agents, o, real);
  auto warming_up = [](int call) {
    if (call < 1) return agent_error(503, "temporary_unavailable", "warming up");
    return json_response(200, {{"review", "async ok"}});
  };
  backend.on_task(warming_up);
  backend_replica.on_task(warming_up);  // the retry goes to the other replica, as cold
  boost::asio::thread_pool blocking(1);
  std::future<Outcome> f = boost::asio::co_spawn(
      io.executor(),
      run_workflow_async(async_workflow, task(), invoker, nullptr, blocking.get_executor()),
      boost::asio::use_future);
  Outcome out = f.get();  // bounded: every call has a timeout, every wait is 10 ms at most
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  EXPECT_THAT(out.answer, HasSubstr("async ok"));
  // Each replica fails its first call: the retry to the other goes at once, the next waits on a
  // real timer (5 ms * 2^1).
  ASSERT_EQ(out.attempts.size(), 3u);
  EXPECT_EQ(out.attempts[0].delay, Duration::zero());
  EXPECT_EQ(out.attempts[1].delay, milliseconds(10));
  blocking.join();
}

}  // namespace
}  // namespace mend::e2e
