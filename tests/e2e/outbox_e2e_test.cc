// End to end: an outage deduplicated into one incident, and notifications that survive a
// restart, over real loopback HTTP and a real SQLite file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "loopback.h"
#include "test_tls.h"

namespace mend::e2e {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

EscalationRequest critical_request(const std::string& task_id) {
  EscalationRequest r;
  r.level = Severity::critical;
  r.error = Error::classified_as(ErrorType::security_error, Severity::critical, "token leaked");
  r.agent = "senior-backend-developer";
  r.task_id = task_id;
  r.task_type = "deployment";
  r.labels = {{"agent", r.agent}, {"error_type", "security_error"}, {"task_type", "deployment"}};
  return r;
}

// What every test here needs: a manual clock, a seeded random source, an HTTP client on its own
// I/O thread, a loopback notification receiver and a scratch directory for the SQLite file.
class OutboxE2E : public ::testing::Test {
 protected:
  ManualClock clock;
  FixedRandom random{0.5};
  IoThread io;
  HttpClient http{io.executor()};
  NotificationSink sink;
  TempDir dir;
};

// One agent fails 10,000 calls in a row. Its breaker is set out of the way (threshold above the
// outage) so that every one of the 10,000 tasks really calls it and really fails; there is no
// fallback and no degraded answer, so each task escalates. The result: one ticket with the
// exact count, and one notification per state change at the receiver, not ten thousand.
// Slow on purpose: 10,000 real loopback HTTP calls and store writes, about 3 s in release and
// 30 s under ASan or TSan; the count is what the test is about.
TEST_F(OutboxE2E, TenThousandFailuresMakeOneTicketAndOneNotificationPerStateChange) {
  constexpr int kFailures = 10000;
  ManualSleeper sleeper(clock);
  HttpAgentInvoker invoker(http);
  TestAgent agent("senior-backend-developer");
  agent.on_task([](int) { return agent_error(502, "external_service_down", "upstream down"); });
  auto store = open_store(dir.file("mend.db"));
  Escalator escalator(*store, clock, test_escalator_options());
  NotificationDispatcher dispatcher(*store, clock, random);
  add_receivers(dispatcher, http, sink);

  AgentRegistry agents;
  AgentInfo info{.name = "senior-backend-developer", .endpoints = {agent.url()}};
  info.breaker.failure_threshold = kFailures + 1;
  ASSERT_TRUE(agents.add(info).ok());
  Env env;
  env.clock = &clock;
  env.sleeper = &sleeper;
  env.random = &random;
  WorkflowOptions o;
  o.escalations = &escalator;
  Workflow workflow(agents, o, env);

  std::set<std::int64_t> records;
  for (int i = 0; i < kFailures; ++i) {
    Task t;
    t.id = "task-" + std::to_string(i);
    t.type = "deployment";
    t.agent = "senior-backend-developer";
    Outcome out = workflow.run(t, invoker);
    ASSERT_EQ(out.status, OutcomeStatus::failed) << i;
    ASSERT_TRUE(out.escalation.has_value()) << out.escalation_error;
    records.insert(out.escalation->record_id);
    clock.advance(std::chrono::milliseconds(10));
    if (i % 1000 == 0) dispatcher.deliver_due();  // the dispatcher runs during the outage
  }
  EXPECT_EQ(agent.task_calls(), kFailures);
  ASSERT_EQ(records.size(), 1u);
  const std::int64_t id = *records.begin();
  std::optional<EscalationRecord> r = store->record(id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->occurrences, kFailures);
  EXPECT_EQ(store->records({}).size(), 1u);
  // The timeline stays readable: opened, the first occurrences, then each power of ten.
  EXPECT_LT(store->timeline(id).size(), 30u);

  dispatcher.deliver_due();
  // external_service_down is high: on-call, so the webhook and Slack, once each.
  ASSERT_EQ(sink.at("/webhook").size(), 1u);
  ASSERT_EQ(sink.at("/slack").size(), 1u);
  EXPECT_EQ(sink.at("/webhook")[0].body["event"], "trigger");

  ASSERT_TRUE(escalator.acknowledge(id, "alice").ok());
  dispatcher.deliver_due();
  ASSERT_TRUE(escalator.resolve(id, "alice").ok());
  dispatcher.deliver_due();
  std::vector<std::string> events;
  for (const auto& m : sink.at("/webhook")) events.push_back(m.body["event"]);
  EXPECT_THAT(events, ::testing::ElementsAre("trigger", "acknowledge", "resolve"));
  EXPECT_EQ(sink.at("/slack").size(), 3u);
  EXPECT_EQ(sink.received().size(), 6u);  // 3 state changes x 2 receivers, nothing else
}

// A store and outbox closed between writing an escalation and delivering it: a new instance on
// the same file delivers it, once per key, and a replay of the escalation notifies nobody again.
TEST_F(OutboxE2E, PendingNotificationsAreDeliveredAfterARestartOncePerKey) {
  const std::string path = dir.file("mend.db");
  std::int64_t id = 0;
  {
    auto store = open_store(path);
    Escalator escalator(*store, clock, test_escalator_options());
    Result<EscalationTaken> t = escalator.escalate(critical_request("before-crash"));
    ASSERT_TRUE(t.ok());
    id = t->record_id;
    EXPECT_EQ(store->outbox(OutboxState::pending, 100).size(), 2u);  // webhook, pagerduty
    // The process "dies" here: nothing was sent.
  }
  EXPECT_TRUE(sink.received().empty());

  auto store = open_store(path);
  Escalator escalator(*store, clock, test_escalator_options());
  NotificationDispatcher dispatcher(*store, clock, random);
  add_receivers(dispatcher, http, sink);
  // A replay of the same escalation after the restart: an occurrence, not a new notification.
  Result<EscalationTaken> replay = escalator.escalate(critical_request("after-restart"));
  ASSERT_TRUE(replay.ok());
  EXPECT_FALSE(replay->created);
  EXPECT_EQ(replay->record_id, id);

  DeliveryReport first = dispatcher.deliver_due();
  EXPECT_EQ(first.delivered, 2);
  DeliveryReport second = dispatcher.deliver_due();
  EXPECT_EQ(second.delivered, 0);
  ASSERT_EQ(sink.at("/webhook").size(), 1u);
  ASSERT_EQ(sink.at("/pagerduty").size(), 1u);
  EXPECT_EQ(sink.at("/webhook")[0].idempotency_key, "webhook:" + std::to_string(id) + ":trigger");
  EXPECT_EQ(sink.at("/webhook")[0].body["war_room_url"],
            "https://war-room.test/INC-" + std::to_string(id));
  EXPECT_EQ(store->outbox(OutboxState::delivered, 100).size(), 2u);
}

// A receiver that is down: the delivery is retried with mend's backoff, across a restart.
TEST_F(OutboxE2E, AFailedDeliveryIsRetriedWithBackoffAcrossARestart) {
  const std::string path = dir.file("mend.db");
  sink.fail_next(2);  // the webhook answers 503 twice
  {
    auto store = open_store(path);
    EscalatorOptions o = test_escalator_options();
    o.routes = {{"emergency", {"webhook"}}};
    Escalator escalator(*store, clock, o);
    ASSERT_TRUE(escalator.escalate(critical_request("t")).ok());
    NotificationDispatcher dispatcher(*store, clock, random);
    add_receivers(dispatcher, http, sink);
    DeliveryReport r = dispatcher.deliver_due();
    EXPECT_EQ(r.retry_scheduled, 1);
    std::vector<OutboxMessage> pending = store->outbox(OutboxState::pending, 10);
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].attempts, 1);
    EXPECT_EQ(pending[0].next_attempt_at, clock.wall_now() + seconds(1));  // base 1 s
    EXPECT_THAT(pending[0].last_error, ::testing::HasSubstr("503"));
    // Not due yet: nothing is sent.
    EXPECT_EQ(dispatcher.deliver_due().retry_scheduled, 0);
  }
  auto store = open_store(path);
  NotificationDispatcher dispatcher(*store, clock, random);
  add_receivers(dispatcher, http, sink);
  clock.advance(seconds(1));
  EXPECT_EQ(dispatcher.deliver_due().retry_scheduled, 1);  // the second 503
  std::vector<OutboxMessage> pending = store->outbox(OutboxState::pending, 10);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].next_attempt_at, clock.wall_now() + seconds(2));  // base * 2^1
  clock.advance(seconds(2));
  EXPECT_EQ(dispatcher.deliver_due().delivered, 1);
  EXPECT_EQ(sink.at("/webhook").size(), 1u);
  EXPECT_TRUE(store->outbox(OutboxState::pending, 10).empty());
}

// A receiver that refused the trigger never gets the acknowledge first: a later message for the
// same receiver and record waits for its predecessor.
TEST_F(OutboxE2E, AnAcknowledgeWaitsForTheTriggerItCloses) {
  auto store = open_store(dir.file("mend.db"));
  EscalatorOptions o = test_escalator_options();
  o.routes = {{"emergency", {"pagerduty"}}};
  Escalator escalator(*store, clock, o);
  NotificationDispatcher dispatcher(*store, clock, random);
  add_receivers(dispatcher, http, sink);
  Result<EscalationTaken> t = escalator.escalate(critical_request("t"));
  ASSERT_TRUE(t.ok());
  sink.fail_next(1);  // PagerDuty is briefly unavailable
  EXPECT_EQ(dispatcher.deliver_due().retry_scheduled, 1);
  ASSERT_TRUE(escalator.acknowledge(t->record_id, "alice").ok());
  DeliveryReport held = dispatcher.deliver_due();
  EXPECT_EQ(held.held_back, 1);
  EXPECT_EQ(held.delivered, 0);
  clock.advance(seconds(1));
  dispatcher.deliver_due();
  dispatcher.deliver_due();
  std::vector<std::string> actions;
  for (const auto& r : sink.at("/pagerduty")) actions.push_back(r.body["event_action"]);
  EXPECT_THAT(actions, ::testing::ElementsAre("trigger", "acknowledge"));
}

// A receiver that runs `during` inside each delivery (to let time pass, or another node act,
// while a delivery is in flight) and counts what it was handed.
class ScriptedReceiver final : public NotificationReceiver {
 public:
  ScriptedReceiver(std::string name, std::function<void()> during)
      : NotificationReceiver(std::move(name)), during_(std::move(during)) {}
  Result<void> deliver(const OutboxMessage& message) override {
    delivered.push_back(message.dedup_key);
    if (during_) during_();
    return {};
  }
  std::vector<std::string> delivered;

 private:
  std::function<void()> during_;
};

OutboxMessage plain_message(const std::string& receiver, const std::string& key, WallTime due) {
  OutboxMessage m;
  m.receiver = receiver;
  m.dedup_key = key;
  m.event = "trigger";
  m.payload = "{}";
  m.created_at = due;
  m.next_attempt_at = due;
  return m;
}

// Two nodes' dispatchers on one store: node A's delivery outlives its lease, node B claims the
// message (a higher fence) and delivers it; A's completion is refused and counted as lost, and
// B's stands. Neither claims what the other holds under a live lease.
TEST_F(OutboxE2E, ADeliveryThatOutlivedItsLeaseCannotCompleteAnotherNodesClaim) {
  const std::string path = dir.file("mend.db");
  auto store_a = open_store(path);
  auto store_b = open_store(path);
  OutboxMessage m = plain_message("hook", "k1", clock.wall_now());
  ASSERT_TRUE(store_a->enqueue(m));

  DispatcherOptions ob;
  ob.owner = "node-b";
  NotificationDispatcher node_b(*store_b, clock, random, ob);
  auto b_receiver = std::make_unique<ScriptedReceiver>("hook", nullptr);
  ScriptedReceiver& at_b = *b_receiver;
  node_b.add_receiver(std::move(b_receiver));

  DispatcherOptions oa;
  oa.owner = "node-a";
  EXPECT_EQ(oa.lease, seconds(15));  // the default
  NotificationDispatcher node_a(*store_a, clock, random, oa);
  DeliveryReport at_b_meanwhile;
  auto a_receiver = std::make_unique<ScriptedReceiver>("hook", [&] {
    // While A delivers: within its lease B finds nothing to claim; past it B takes over.
    EXPECT_EQ(node_b.deliver_due().delivered, 0);
    clock.advance(seconds(16));
    at_b_meanwhile = node_b.deliver_due();
  });
  ScriptedReceiver& at_a = *a_receiver;
  node_a.add_receiver(std::move(a_receiver));

  DeliveryReport a = node_a.deliver_due();
  EXPECT_EQ(a.delivered, 0);
  EXPECT_EQ(a.lease_lost, 1);
  EXPECT_EQ(at_b_meanwhile.delivered, 1);
  EXPECT_EQ(at_a.delivered.size(), 1u);  // at least once: both sent it, the store kept B's
  EXPECT_EQ(at_b.delivered.size(), 1u);
  std::vector<OutboxMessage> done = store_a->outbox(OutboxState::delivered, 10);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].attempts, 1);
  EXPECT_EQ(done[0].fence, 2);
  EXPECT_EQ(node_a.deliver_due().delivered + node_b.deliver_due().delivered, 0);
}

// A pass slower than its lease: what the pass reaches after its lease expired is not sent (another
// node may hold it by now); the next pass claims it again.
TEST_F(OutboxE2E, APassSlowerThanItsLeaseLeavesTheRestForTheNextClaim) {
  auto store = open_store(dir.file("mend.db"));
  OutboxMessage first = plain_message("hook", "k1", clock.wall_now());
  OutboxMessage second = plain_message("hook", "k2", clock.wall_now());
  ASSERT_TRUE(store->enqueue(first));
  ASSERT_TRUE(store->enqueue(second));
  NotificationDispatcher dispatcher(*store, clock, random);
  auto receiver = std::make_unique<ScriptedReceiver>("hook", [&] { clock.advance(seconds(15)); });
  ScriptedReceiver& sent = *receiver;
  dispatcher.add_receiver(std::move(receiver));
  DeliveryReport pass = dispatcher.deliver_due();
  EXPECT_EQ(pass.delivered, 1);  // its fence still held: nobody claimed it meanwhile
  EXPECT_EQ(pass.lease_lost, 1);
  EXPECT_EQ(sent.delivered, (std::vector<std::string>{"k1"}));
  DeliveryReport next = dispatcher.deliver_due();
  EXPECT_EQ(next.delivered, 1);
  EXPECT_EQ(sent.delivered, (std::vector<std::string>{"k1", "k2"}));
  std::vector<OutboxMessage> done = store->outbox(OutboxState::delivered, 10);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[1].fence, 2);
}

// A process that died holding claims: after a restart (a new owner id) its messages wait until
// the dead lease expires, then go out once.
TEST_F(OutboxE2E, ClaimsOfADeadProcessAreDeliveredOnceTheirLeaseExpires) {
  const std::string path = dir.file("mend.db");
  {
    auto store = open_store(path);
    OutboxMessage m = plain_message("hook", "k1", clock.wall_now());
    ASSERT_TRUE(store->enqueue(m));
    ASSERT_EQ(store->claim_due(clock.wall_now(), 10, "dead-process", seconds(15)).size(), 1u);
    // The process "dies" here, holding the claim.
  }
  auto store = open_store(path);
  NotificationDispatcher dispatcher(*store, clock, random);
  EXPECT_FALSE(dispatcher.owner().empty());
  EXPECT_EQ(dispatcher.owner(), process_owner_id());
  auto receiver = std::make_unique<ScriptedReceiver>("hook", nullptr);
  ScriptedReceiver& sent = *receiver;
  dispatcher.add_receiver(std::move(receiver));
  clock.advance(seconds(14));
  EXPECT_EQ(dispatcher.deliver_due().delivered, 0);
  clock.advance(seconds(1));
  EXPECT_EQ(dispatcher.deliver_due().delivered, 1);
  EXPECT_EQ(dispatcher.deliver_due().delivered, 0);
  EXPECT_EQ(sent.delivered.size(), 1u);
}

// Notifications over HTTPS: delivered when the receiver's certificate verifies against the
// configured CA; refused (and retried later, not sent in clear) when it does not.
TEST(HttpsE2E, NotificationsGoOverVerifiedHttpsOnly) {
  auto certs = testing::TestCertificates::generate();
  NotificationSink sink(certs->cert_pem, certs->key_pem);
  ASSERT_EQ(sink.url("/webhook").rfind("https://", 0), 0u);
  ManualClock clock;
  FixedRandom random(0.5);
  IoThread io;
  HttpClient trusting(io.executor(), {.ca_file = certs->ca_file});
  HttpClient system_roots(io.executor());  // does not know the test CA
  TempDir dir;
  auto store = open_store(dir.file("mend.db"));
  EscalatorOptions o = test_escalator_options();
  o.routes = {{"emergency", {"webhook"}}};
  Escalator escalator(*store, clock, o);
  ASSERT_TRUE(escalator.escalate(critical_request("t")).ok());

  NotificationDispatcher refused(*store, clock, random);
  refused.add_receiver(
      std::make_unique<WebhookReceiver>("webhook", system_roots, sink.url("/webhook")));
  EXPECT_EQ(refused.deliver_due().retry_scheduled, 1);
  EXPECT_TRUE(sink.received().empty());
  std::vector<OutboxMessage> pending = store->outbox(OutboxState::pending, 10);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_THAT(pending[0].last_error, ::testing::HasSubstr("certificate"));

  clock.advance(seconds(1));
  NotificationDispatcher verified(*store, clock, random);
  verified.add_receiver(
      std::make_unique<WebhookReceiver>("webhook", trusting, sink.url("/webhook")));
  EXPECT_EQ(verified.deliver_due().delivered, 1);
  ASSERT_EQ(sink.at("/webhook").size(), 1u);
  EXPECT_EQ(sink.at("/webhook")[0].body["event"], "trigger");
}

}  // namespace
}  // namespace mend::e2e
