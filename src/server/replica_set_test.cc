// The replica set's decisions on a manual clock: which probes are due, what an answer changes,
// stale answers after a restart, agents' health, reloads and memory. No processes, no sockets.
#include "replica_set.h"

#include <gtest/gtest.h>

namespace mend::server_detail {
namespace {

using namespace std::chrono_literals;

// Records what the set tells the daemon, in order.
class RecordingHost final : public ReplicaSetHost {
 public:
  bool agent_health(const std::string& agent, const AgentReplicaHealth& health) override {
    const bool was = healthy.count(agent) ? healthy[agent] : true;
    healthy[agent] = health.any_ready;
    told.push_back(agent + (health.any_ready ? " healthy" : " unhealthy") +
                   (health.any_ready && health.ready_unprobed ? " (assumed)" : ""));
    return was && !health.any_ready;
  }
  void replica_transition(const std::string& agent, const std::string& transition) override {
    told.push_back(agent + ": " + transition);
  }
  void replica_readiness(const std::string& agent, const std::string& url, bool ready) override {
    readiness.push_back(agent + " " + url + (ready ? " ready" : " not ready"));
  }
  std::map<std::string, bool> healthy;
  std::vector<std::string> told;
  std::vector<std::string> readiness;  // what the balancers would hear
};

ProbesConfig quick_probes() {
  ProbesConfig p;
  p.path = "/health";
  p.startup = {.period = 1s, .timeout = 1s, .failure_threshold = 3, .initial_delay = 0s};
  p.readiness = {.period = 1s, .timeout = 1s, .failure_threshold = 2, .initial_delay = 0s};
  p.liveness = {.period = 1s, .timeout = 1s, .failure_threshold = 2, .initial_delay = 0s};
  return p;
}

struct ReplicaSetTest : ::testing::Test {
  ManualClock clock;
  RecordingHost host;
  ReplicaSet set{clock, host};
  // The supervisor's view: process name -> pid (running).
  std::map<std::string, int> running;
  ReplicaSet::ProcessLookup status_of = [this](const std::string& name) {
    std::optional<ProcessStatus> s;
    if (auto it = running.find(name); it != running.end()) {
      s.emplace();
      s->name = name;
      s->pid = it->second;
      s->running = true;
      s->rss_bytes = 100;
    }
    return s;
  };

  Replica supervised(const std::string& agent, int index) {
    Replica r;
    r.agent = agent;
    r.index = index;
    r.process = agent + "#" + std::to_string(index);
    r.url = "http://127.0.0.1:" + std::to_string(9000 + index);
    r.probes = quick_probes();
    r.health = ReplicaProbes(r.probes, /*supervised=*/true);
    r.epoch = set.new_epoch();
    return r;
  }
  Replica by_url(const std::string& agent, int index) {
    Replica r;
    r.agent = agent;
    r.index = index;
    r.url = "http://agent-" + std::to_string(index);
    r.probes = quick_probes();
    r.health = ReplicaProbes(r.probes, /*supervised=*/false);
    r.epoch = set.new_epoch();
    return r;
  }
  void start(const std::string& process, int pid) {
    running[process] = pid;
    set.on_process_event({ProcessEvent::Kind::started, process, pid, "started", {}});
  }
  // Takes the one due probe and answers it.
  std::optional<ReplicaSet::ProbeOutcome> answer_due(bool ok) {
    std::vector<ReplicaSet::DueProbe> due = set.take_due(clock.now(), status_of);
    EXPECT_EQ(due.size(), 1u);
    if (due.empty()) return std::nullopt;
    return set.record_probe(due[0].epoch, due[0].kind, ok, ok ? "ok" : "503", clock.now());
  }
};

TEST_F(ReplicaSetTest, AnAgentMendDoesNotStartIsReadyUntilAProbeSaysOtherwise) {
  set.replace({}, {by_url("api", 0)});
  set.report_health();
  EXPECT_EQ(host.told.back(), "api healthy (assumed)");
  EXPECT_EQ(set.ready_counts().at("api"), 1);
  std::optional<ReplicaSet::ProbeOutcome> first = answer_due(false);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->transition.empty());  // one failure of two
  clock.advance(1s);
  std::optional<ReplicaSet::ProbeOutcome> second = answer_due(false);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->transition, "not ready: 503");
  EXPECT_TRUE(second->agent_fell);
  EXPECT_FALSE(second->restart_process);  // never restarted: mend does not start it
  // The cause is told before the effect.
  ASSERT_GE(host.told.size(), 2u);
  EXPECT_EQ(host.told[host.told.size() - 2], "api: not ready: 503");
  EXPECT_EQ(host.told.back(), "api unhealthy");
  EXPECT_FALSE(set.every_agent_ready());
}

TEST_F(ReplicaSetTest, EveryChangeOfAReplicasReadinessReachesTheHostForItsBalancer) {
  set.replace({}, {supervised("worker", 0), supervised("worker", 1)});
  start("worker#0", 41);
  start("worker#1", 42);
  const std::vector<std::string> started{"worker http://127.0.0.1:9000 not ready",
                                         "worker http://127.0.0.1:9001 not ready"};
  EXPECT_EQ(host.readiness, started);  // not ready until the startup probe passes
  host.readiness.clear();
  for (const ReplicaSet::DueProbe& due : set.take_due(clock.now(), status_of)) {
    ASSERT_TRUE(set.record_probe(due.epoch, due.kind, true, "ok", clock.now()));
  }
  const std::vector<std::string> ready{"worker http://127.0.0.1:9000 ready",
                                       "worker http://127.0.0.1:9001 ready"};
  EXPECT_EQ(host.readiness, ready);
  host.readiness.clear();
  // Readiness fails twice on replica 1 only: it alone is taken out; a probe that changes
  // nothing tells nothing.
  for (int round = 0; round < 2; ++round) {
    clock.advance(1s);
    for (const ReplicaSet::DueProbe& due : set.take_due(clock.now(), status_of)) {
      const bool second =
          set.probe_target(due.epoch, due.kind)->url.find(":9001") != std::string::npos;
      ASSERT_TRUE(set.record_probe(due.epoch, due.kind, !second, "503", clock.now()));
    }
  }
  EXPECT_EQ(host.readiness, std::vector<std::string>{"worker http://127.0.0.1:9001 not ready"});
  host.readiness.clear();
  // mend restarts replica 0: out of traffic at once.
  set.take_out("worker#0");
  EXPECT_EQ(host.readiness, std::vector<std::string>{"worker http://127.0.0.1:9000 not ready"});
  host.readiness.clear();
  // Replica 1's process exits: not ready (it was not already, and says so again: idempotent).
  set.on_process_event({ProcessEvent::Kind::exited, "worker#1", 42, "exited", {}});
  EXPECT_EQ(host.readiness, std::vector<std::string>{"worker http://127.0.0.1:9001 not ready"});
}

TEST_F(ReplicaSetTest, AReplicaWhosePortWasTakenMovesAtMostThreeTimesInTenMinutes) {
  set.replace({}, {supervised("worker", 0)});
  start("worker#0", 41);
  // An exit the output did not explain: restarted where it was.
  EXPECT_FALSE(set.take_port_move("worker#0", clock.now()));
  for (int move = 0; move < ReplicaSet::kMaxPortMoves; ++move) {
    set.port_in_use("worker#0");
    ASSERT_TRUE(set.take_port_move("worker#0", clock.now())) << move;
    EXPECT_FALSE(set.take_port_move("worker#0", clock.now())) << "the mark is taken once";
    host.readiness.clear();
    ASSERT_TRUE(set.move_port("worker#0", static_cast<unsigned short>(9100 + move)));
    const std::string url = "http://127.0.0.1:" + std::to_string(9100 + move);
    EXPECT_EQ(set.snapshot()[0].url, url);
    EXPECT_EQ(host.readiness, std::vector<std::string>{"worker " + url + " not ready"});
    clock.advance(1min);
  }
  // A fourth within ten minutes: left to crash-loop supervision.
  set.port_in_use("worker#0");
  EXPECT_FALSE(set.take_port_move("worker#0", clock.now()));
  // Ten minutes after the first move, one more is allowed.
  clock.advance(7min);
  set.port_in_use("worker#0");
  EXPECT_TRUE(set.take_port_move("worker#0", clock.now()));
  // What it said before a start is forgotten at the start.
  set.port_in_use("worker#0");
  start("worker#0", 42);
  EXPECT_FALSE(set.take_port_move("worker#0", clock.now()));
  EXPECT_FALSE(set.move_port("nobody#0", 9200));
  EXPECT_FALSE(set.take_port_move("nobody#0", clock.now()));
}

TEST_F(ReplicaSetTest, ASupervisedReplicaIsProbedOnlyOnceItsStartReachedTheSet) {
  set.replace({}, {supervised("worker", 0)});
  EXPECT_TRUE(set.take_due(clock.now(), status_of).empty());  // no process yet
  running["worker#0"] = 41;                                   // running, start event not seen
  EXPECT_TRUE(set.take_due(clock.now(), status_of).empty());
  set.on_process_event({ProcessEvent::Kind::started, "worker#0", 41, "started", {}});
  std::vector<ReplicaSet::DueProbe> due = set.take_due(clock.now(), status_of);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].kind, ProbeKind::startup);
  // In progress: not due again until answered.
  clock.advance(5s);
  EXPECT_TRUE(set.take_due(clock.now(), status_of).empty());
  std::optional<ReplicaSet::ProbeTarget> target = set.probe_target(due[0].epoch, due[0].kind);
  ASSERT_TRUE(target);
  EXPECT_EQ(target->url, "http://127.0.0.1:9000/health");
  EXPECT_EQ(target->timeout, 1s);
  std::optional<ReplicaSet::ProbeOutcome> o =
      set.record_probe(due[0].epoch, due[0].kind, true, "ok", clock.now());
  ASSERT_TRUE(o);
  EXPECT_EQ(o->transition, "ready");
  EXPECT_EQ(host.told.back(), "worker healthy");
  EXPECT_TRUE(set.every_agent_ready());
}

TEST_F(ReplicaSetTest, AnAnswerAboutAProcessThatIsGoneChangesNothing) {
  set.replace({}, {supervised("worker", 0)});
  start("worker#0", 41);
  std::vector<ReplicaSet::DueProbe> due = set.take_due(clock.now(), status_of);
  ASSERT_EQ(due.size(), 1u);
  // The process restarted while the probe was out: the answer is about the old one.
  start("worker#0", 42);
  EXPECT_FALSE(set.record_probe(due[0].epoch, due[0].kind, true, "ok", clock.now()));
  EXPECT_FALSE(set.probe_target(due[0].epoch, due[0].kind));
  EXPECT_EQ(set.ready_counts().at("worker"), 0);
  // The new process is probed afresh.
  std::optional<ReplicaSet::ProbeOutcome> fresh = answer_due(true);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->transition, "ready");
}

TEST_F(ReplicaSetTest, StartupFailuresAtTheThresholdRestartTheProcessOnce) {
  set.replace({}, {supervised("worker", 0)});
  start("worker#0", 41);
  std::optional<ReplicaSet::ProbeOutcome> last;
  for (int i = 0; i < 3; ++i) {
    last = answer_due(false);
    ASSERT_TRUE(last);
    clock.advance(1s);
  }
  ASSERT_TRUE(last->restart_process);
  EXPECT_EQ(*last->restart_process, "worker#0");
  EXPECT_EQ(last->transition, "startup probe failed 3 times");
  // Restarting: no probes until the new process starts.
  clock.advance(10s);
  EXPECT_TRUE(set.take_due(clock.now(), status_of).empty());
  start("worker#0", 43);
  EXPECT_EQ(set.take_due(clock.now(), status_of).size(), 1u);
}

TEST_F(ReplicaSetTest, LivenessFailuresRestartAStartedProcess) {
  set.replace({}, {supervised("worker", 0)});
  start("worker#0", 41);
  ASSERT_TRUE(answer_due(true));  // started and ready
  std::optional<ReplicaSet::ProbeOutcome> restart;
  // Ticks as the daemon's probe loop makes them: a tick takes one due probe per replica.
  for (int i = 0; i < 100 && !restart; ++i) {
    clock.advance(100ms);
    for (ReplicaSet::DueProbe d : set.take_due(clock.now(), status_of)) {
      std::optional<ReplicaSet::ProbeOutcome> o =
          set.record_probe(d.epoch, d.kind, false, "timeout", clock.now());
      if (o && o->restart_process) restart = o;
    }
  }
  ASSERT_TRUE(restart);
  EXPECT_EQ(restart->transition, "liveness probe failed 2 times: timeout");
}

TEST_F(ReplicaSetTest, TheAgentIsAsHealthyAsItsBestReplica) {
  set.replace({}, {supervised("worker", 0), supervised("worker", 1)});
  start("worker#0", 41);
  start("worker#1", 42);
  for (ReplicaSet::DueProbe d : set.take_due(clock.now(), status_of)) {
    set.record_probe(d.epoch, d.kind, true, "ok", clock.now());
  }
  EXPECT_EQ(set.ready_counts().at("worker"), 2);
  set.on_process_event({ProcessEvent::Kind::exited, "worker#0", 41, "exited with status 1", {}});
  EXPECT_EQ(set.ready_counts().at("worker"), 1);
  EXPECT_EQ(host.told.back(), "worker healthy");
  set.take_out("worker#1");  // mend restarts it
  EXPECT_EQ(set.ready_counts().at("worker"), 0);
  EXPECT_EQ(host.told.back(), "worker unhealthy");
  EXPECT_EQ(set.processes_of("worker"), (std::vector<std::string>{"worker#0", "worker#1"}));
  EXPECT_TRUE(set.processes_of("nobody").empty());
}

TEST_F(ReplicaSetTest, AReloadKeepsUnchangedAgentsAsTheyAreAndStopsChangedOnes) {
  Config before;
  AgentConfig worker;
  worker.name = "worker";
  worker.command = "./worker";
  worker.replicas = 1;
  worker.probes = quick_probes();
  AgentConfig other = worker;
  other.name = "other";
  before.agents = {worker, other};
  set.replace({}, {supervised("worker", 0), supervised("other", 0)});
  start("worker#0", 41);
  ASSERT_EQ(set.take_due(clock.now(), status_of).size(), 1u);

  Config after = before;
  after.agents[0].probes.readiness.failure_threshold = 5;  // settings only: kept
  after.agents[0].memory_limit_bytes = 1000;
  after.agents[1].args = {"--fast"};  // another process: replaced
  ReplicaSet::Reconfiguration plan = set.plan_reconfigure(after, &before);
  ASSERT_EQ(plan.keep.size(), 1u);
  EXPECT_EQ(plan.keep[0].agent, "worker");
  EXPECT_EQ(plan.to_stop, (std::vector<std::string>{"other#0"}));

  // Meanwhile its probe was answered: the replace keeps that, with the new settings.
  std::vector<Replica> now = set.snapshot();
  set.record_probe(now[0].epoch, ProbeKind::startup, true, "ok", clock.now());
  set.replace(plan.keep, {supervised("other", 0)});
  std::vector<Replica> replaced = set.snapshot();
  ASSERT_EQ(replaced.size(), 2u);
  EXPECT_TRUE(replaced[0].health.is_ready());
  EXPECT_EQ(replaced[0].memory_limit, 1000u);
  EXPECT_EQ(replaced[0].probes.readiness.failure_threshold, 5);
  EXPECT_EQ(replaced[1].agent, "other");
}

TEST_F(ReplicaSetTest, AReplicaOverItsMemoryLimitIsReportedOnceUntilHealed) {
  Replica r = supervised("worker", 0);
  r.memory_limit = 50;  // the lookup says 100 bytes
  set.replace({}, {r});
  start("worker#0", 41);
  std::vector<ReplicaSet::OverMemory> over = set.over_memory(status_of);
  ASSERT_EQ(over.size(), 1u);
  EXPECT_EQ(over[0].agent, "worker");
  EXPECT_DOUBLE_EQ(over[0].percent, 200.0);
  EXPECT_TRUE(set.over_memory(status_of).empty());  // healing
  set.healing_done("worker");
  EXPECT_EQ(set.over_memory(status_of).size(), 1u);
}

TEST_F(ReplicaSetTest, AnAbandonedProbeIsDueAgain) {
  set.replace({}, {by_url("api", 0)});
  std::vector<ReplicaSet::DueProbe> due = set.take_due(clock.now(), status_of);
  ASSERT_EQ(due.size(), 1u);
  set.probe_abandoned(due[0].epoch);
  clock.advance(1s);
  EXPECT_EQ(set.take_due(clock.now(), status_of).size(), 1u);
}

// --- scaling ---------------------------------------------------------------------------------

Config scaled_config(int min, int max) {
  Config config;
  AgentConfig agent;
  agent.name = "worker";
  agent.command = "worker";
  agent.replicas = min;
  ScalingConfig scaling;
  scaling.scaler.min_replicas = min;
  scaling.scaler.max_replicas = max;
  scaling.scaler.scale_up_cooldown = 10s;
  scaling.scaler.scale_down_delay = 30s;
  scaling.scaler.start_timeout = 20s;
  scaling.interval = 1s;
  agent.scaling = scaling;
  agent.policies.call_timeout = 5s;
  config.agents.push_back(agent);
  return config;
}

TEST_F(ReplicaSetTest, AScaleUpsReplicaTakesCallsOnlyOnceReadyAndAScaleDownDrainsTheLastOne) {
  set.replace({}, {supervised("worker", 0)});
  start("worker#0", 41);
  ASSERT_EQ(answer_due(true)->transition, "ready");
  set.configure_scaling(scaled_config(1, 3), clock.now());
  EXPECT_EQ(set.scaled_agents(), std::vector<std::string>{"worker"});

  // Not due before its interval; then refusals since the last observation scale it up.
  std::map<std::string, ReplicaSet::LoadReading> loads = {{"worker", {.refused = 4}}};
  EXPECT_TRUE(set.observe_scaling(clock.now(), loads).empty());
  clock.advance(1s);
  std::vector<ReplicaSet::ScalingStep> steps = set.observe_scaling(clock.now(), loads);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].agent, "worker");
  EXPECT_EQ(steps[0].decision.action, ScalingAction::scale_up);
  EXPECT_EQ(steps[0].decision.reason,
            "saturated: 4 calls refused for want of capacity; scaling up from 1 to 2 replicas");
  // The same totals a second later are no news: nothing was refused since.
  clock.advance(1s);
  EXPECT_TRUE(set.observe_scaling(clock.now(), loads).empty());

  EXPECT_EQ(set.free_index("worker"), 1);
  set.add_scaled(supervised("worker", 1));
  EXPECT_EQ(set.endpoints().at("worker"), std::vector<std::string>{"http://127.0.0.1:9000"});
  EXPECT_EQ(set.in_service_counts().at("worker"), 1);
  start("worker#1", 42);
  // worker#0's readiness probe is due too: every answer ok, one of them admits worker#1.
  std::optional<ReplicaSet::ProbeOutcome> ready;
  for (const ReplicaSet::DueProbe& due : set.take_due(clock.now(), status_of)) {
    std::optional<ReplicaSet::ProbeOutcome> o =
        set.record_probe(due.epoch, due.kind, true, "ok", clock.now());
    ASSERT_TRUE(o);
    if (o->admitted) ready = o;
  }
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->replicas_in_service, 2);
  EXPECT_EQ(set.endpoints().at("worker"),
            (std::vector<std::string>{"http://127.0.0.1:9000", "http://127.0.0.1:9001"}));
  EXPECT_EQ(set.processes_of("worker"), (std::vector<std::string>{"worker#0", "worker#1"}));

  // Quiet for the scale-down delay: the last one added goes out of service at once, and is
  // stopped once the agent has no call out (or after its call timeout).
  loads["worker"].calls_out = 1;
  std::vector<ReplicaSet::ScalingStep> down;
  for (int i = 0; i < 40 && down.empty(); ++i) {
    clock.advance(1s);
    down = set.observe_scaling(clock.now(), loads);
  }
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].decision.action, ScalingAction::scale_down);
  EXPECT_EQ(down[0].process, "worker#1");
  auto busy = [](const std::string&) { return false; };
  auto idle = [](const std::string&) { return true; };
  // Not stopped before a generation without it was built, idle or not.
  EXPECT_TRUE(set.take_retired(clock.now(), idle).empty());
  EXPECT_EQ(set.endpoints().at("worker"), std::vector<std::string>{"http://127.0.0.1:9000"});
  EXPECT_EQ(set.processes_of("worker"), std::vector<std::string>{"worker#0"});
  EXPECT_TRUE(set.take_retired(clock.now(), busy).empty());
  clock.advance(4s);  // calls out, within the call timeout (5 s): it drains
  EXPECT_TRUE(set.take_retired(clock.now(), busy).empty());
  EXPECT_EQ(set.take_retired(clock.now(), idle), std::vector<std::string>{"worker#1"});
  EXPECT_TRUE(set.take_retired(clock.now(), idle).empty());  // returned once
  set.forget("worker#1");
  EXPECT_EQ(set.snapshot().size(), 1u);
  EXPECT_EQ(set.free_index("worker"), 1);
}

TEST_F(ReplicaSetTest, AScaleUpsReplicaNeverReadyIsRetiredAtOnceAndABusyRetireWaitsItsDrain) {
  set.replace({}, {supervised("worker", 0)});
  start("worker#0", 41);
  ASSERT_EQ(answer_due(true)->transition, "ready");
  set.configure_scaling(scaled_config(1, 2), clock.now());
  clock.advance(1s);
  ASSERT_EQ(
      set.observe_scaling(clock.now(), {{"worker", {.pool_exhausted = 1}}}).at(0).decision.action,
      ScalingAction::scale_up);
  set.add_scaled(supervised("worker", 1));
  std::vector<ReplicaSet::ScalingStep> abandoned;
  for (int i = 0; i < 30 && abandoned.empty(); ++i) {
    clock.advance(1s);
    abandoned = set.observe_scaling(clock.now(), {{"worker", {.pool_exhausted = 1}}});
  }
  ASSERT_EQ(abandoned.size(), 1u);
  EXPECT_EQ(abandoned[0].decision.action, ScalingAction::start_abandoned);
  EXPECT_EQ(abandoned[0].process, "worker#1");
  auto busy = [](const std::string&) { return false; };
  EXPECT_EQ(set.take_retired(clock.now(), busy), std::vector<std::string>{"worker#1"});
  set.forget("worker#1");

  // A scale-up whose process could not start at all: forgotten, and the cooldown runs.
  clock.advance(10s);
  ASSERT_EQ(
      set.observe_scaling(clock.now(), {{"worker", {.pool_exhausted = 2}}}).at(0).decision.action,
      ScalingAction::scale_up);
  set.add_scaled(supervised("worker", 1));
  set.scale_up_failed("worker", "worker#1", clock.now());
  EXPECT_EQ(set.snapshot().size(), 1u);
  clock.advance(1s);
  std::vector<ReplicaSet::ScalingStep> held =
      set.observe_scaling(clock.now(), {{"worker", {.pool_exhausted = 3}}});
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].decision.held, ScalingHold::cooldown);
}

TEST_F(ReplicaSetTest, AReloadKeepsAScalerWhoseOptionsAreTheSame) {
  set.replace({}, {supervised("worker", 0)});
  set.configure_scaling(scaled_config(1, 2), clock.now());
  clock.advance(1s);
  ASSERT_EQ(set.observe_scaling(clock.now(), {{"worker", {.refused = 1}}}).size(), 1u);
  set.configure_scaling(scaled_config(1, 2), clock.now());  // the same: still starting
  clock.advance(1s);
  std::vector<ReplicaSet::ScalingStep> held =
      set.observe_scaling(clock.now(), {{"worker", {.refused = 2}}});
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].decision.held, ScalingHold::starting);
  set.configure_scaling(Config{}, clock.now());  // no longer scaled
  EXPECT_TRUE(set.scaled_agents().empty());
}

}  // namespace
}  // namespace mend::server_detail
