// The daemon's metrics as a part: every family it counts into is registered once with its help
// and labels, the scrape-time readings come from the functions it is handed (and show nothing
// while a part does not exist yet; the replica families read the agents' balancers), and a
// workflow event has the event stream's JSON shape.
#include "daemon_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mend/core/clock.h"
#include "mend/core/random.h"
#include "mend/core/replica_balancer.h"

namespace mend::server_detail {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DaemonMetricsTest, EveryCountedFamilyIsRegisteredOnceWithItsTypeAndLabels) {
  MetricsRegistry registry;
  DaemonMetrics metrics(registry);
  metrics.tasks->with({"succeeded"}).inc();
  metrics.attempts->with({"reviewer", "failure"}).inc(2);
  metrics.latency->with({"succeeded"}).observe(0.25);
  metrics.in_flight->with({}).set(3);
  metrics.relay_requests->with({"reviewer", "answered"}).inc();
  const std::string text = registry.render();
  for (const char* line :
       {"# TYPE mend_tasks_total counter", "# TYPE mend_task_duration_seconds histogram",
        "# TYPE mend_tasks_in_flight gauge", "# TYPE mend_attempts_total counter",
        "# TYPE mend_retries_total counter", "# TYPE mend_fallbacks_total counter",
        "# TYPE mend_degraded_answers_total counter", "# TYPE mend_escalations_total counter",
        "# TYPE mend_circuit_transitions_total counter", "# TYPE mend_agent_restarts_total counter",
        "# TYPE mend_notifications_total counter", "# TYPE mend_config_reloads_total counter",
        "# TYPE mend_relay_requests_total counter", "mend_tasks_total{outcome=\"succeeded\"} 1",
        "mend_attempts_total{agent=\"reviewer\",result=\"failure\"} 2",
        "mend_task_duration_seconds_count{outcome=\"succeeded\"} 1", "mend_tasks_in_flight 3",
        "mend_relay_requests_total{relay=\"reviewer\",outcome=\"answered\"} 1"}) {
    EXPECT_THAT(text, HasSubstr(line)) << line;
  }
  // A second set of families on another registry does not clash: each daemon has its own.
  MetricsRegistry other;
  DaemonMetrics again(other);
  EXPECT_EQ(other.value("mend_tasks_total", {"succeeded"}), std::nullopt);
}

TEST(DaemonMetricsTest, ReadingsComeFromTheFunctionsHandedInAtEachScrape) {
  MetricsRegistry registry;
  DaemonMetrics metrics(registry);
  CircuitState reviewer = CircuitState::closed;
  int ready = 2;
  std::optional<TaskWriter::Health> writes;  // the store is not open yet
  metrics.add_readings(
      registry, {.circuits =
                     [&] {
                       return std::vector<std::pair<std::string, CircuitState>>{
                           {"reviewer", reviewer}, {"deployer", CircuitState::isolated}};
                     },
                 .ready_replicas =
                     [&] {
                       return std::map<std::string, int>{{"reviewer", ready}};
                     },
                 .processes =
                     [] {
                       ProcessStatus p;
                       p.name = "reviewer-0";
                       p.rss_bytes = 4096;
                       return std::vector<ProcessStatus>{p};
                     },
                 .task_writes = [&] { return writes; },
                 .escalation_writes = [] { return std::optional<EscalationBacklog::Stats>{}; },
                 .event_stream_clients = [] { return std::size_t{5}; }});

  EXPECT_EQ(registry.value("mend_circuit_state", {"reviewer"}), 0);
  EXPECT_EQ(registry.value("mend_circuit_state", {"deployer"}), 3);
  EXPECT_EQ(registry.value("mend_agent_ready_replicas", {"reviewer"}), 2);
  EXPECT_EQ(registry.value("mend_agent_rss_bytes", {"reviewer-0"}), 4096);
  EXPECT_EQ(registry.value("mend_event_stream_clients"), 5);
  EXPECT_EQ(registry.value("mend_store_task_writes_total", {"written"}), std::nullopt);
  EXPECT_THAT(registry.render(), Not(HasSubstr("mend_store_task_writes_total{")));

  reviewer = CircuitState::open;
  ready = 0;
  writes = TaskWriter::Health{};
  writes->written = 12;
  writes->failed_tries = 3;
  writes->retry_pending = 1;
  EXPECT_EQ(registry.value("mend_circuit_state", {"reviewer"}), 2);
  EXPECT_EQ(registry.value("mend_agent_ready_replicas", {"reviewer"}), 0);
  EXPECT_EQ(registry.value("mend_store_task_writes_total", {"written"}), 12);
  EXPECT_EQ(registry.value("mend_store_task_writes_total", {"failed"}), 3);
  EXPECT_EQ(registry.value("mend_store_task_writes_pending_retry"), 1);
}

TEST(DaemonMetricsTest, ReplicaFamiliesReadTheBalancersAtEachScrape) {
  MetricsRegistry registry;
  DaemonMetrics metrics(registry);
  ReplicaBalancerOptions options;
  options.consecutive_failures = 1;  // the first failure ejects
  ReplicaBalancer balancer(2, options);
  const TimePoint start{};
  TimePoint now = start;
  metrics.add_readings(registry, {.replicas = [&] {
                         std::vector<ReplicaReading> readings;
                         const auto balances = balancer.snapshot(now);
                         for (std::size_t i = 0; i < balances.size(); ++i) {
                           readings.push_back({"reviewer", static_cast<int>(i), balances[i]});
                         }
                         return readings;
                       }});
  EXPECT_EQ(registry.value("mend_replica_outstanding_calls", {"reviewer", "0"}), 0);
  EXPECT_EQ(registry.value("mend_replica_ejected", {"reviewer", "1"}), 0);
  EXPECT_EQ(registry.value("mend_replica_ejections_total", {"reviewer", "0"}), 0);

  FixedRandom random(0);
  const int first = balancer.pick(now, random);
  const int second = balancer.pick(now, random);
  ASSERT_NE(first, second);  // the two replicas, one call outstanding each
  EXPECT_EQ(registry.value("mend_replica_outstanding_calls", {"reviewer", "0"}), 1);
  EXPECT_EQ(registry.value("mend_replica_outstanding_calls", {"reviewer", "1"}), 1);

  balancer.report(first, ReplicaCallResult::failed, now, std::chrono::milliseconds(5));
  const std::string failed = std::to_string(first);
  const std::string other = std::to_string(second);
  EXPECT_EQ(registry.value("mend_replica_outstanding_calls", {"reviewer", failed}), 0);
  EXPECT_EQ(registry.value("mend_replica_ejected", {"reviewer", failed}), 1);
  EXPECT_EQ(registry.value("mend_replica_ejected", {"reviewer", other}), 0);
  EXPECT_EQ(registry.value("mend_replica_ejections_total", {"reviewer", failed}), 1);
  const std::string text = registry.render();
  EXPECT_THAT(text, HasSubstr("# TYPE mend_replica_outstanding_calls gauge"));
  EXPECT_THAT(text, HasSubstr("# TYPE mend_replica_ejected gauge"));
  EXPECT_THAT(text, HasSubstr("# TYPE mend_replica_ejections_total counter"));

  // Back once its time is up; the count of ejections stays.
  now = start + options.base_ejection_time;
  EXPECT_EQ(registry.value("mend_replica_ejected", {"reviewer", failed}), 0);
  EXPECT_EQ(registry.value("mend_replica_ejections_total", {"reviewer", failed}), 1);
}

TEST(DaemonMetricsTest, RetryBudgetFamiliesReadEachAgentsWindowAtEachScrape) {
  MetricsRegistry registry;
  DaemonMetrics metrics(registry);
  RetryBudget budget(RetryBudgetOptions{.min_retries_per_second = 0});
  const TimePoint now{};
  metrics.add_readings(registry, {.retry_budgets = [&] {
                         return std::vector<std::pair<std::string, RetryBudget::Reading>>{
                             {"reviewer", budget.reading(now)}};
                       }});
  EXPECT_EQ(registry.value("mend_agent_actual_success_ratio", {"reviewer"}), 1);
  EXPECT_EQ(registry.value("mend_retry_budget_allowance", {"reviewer"}), 0);
  // Four requests: three answered at once, one failed and answered on its retry.
  for (int i = 0; i < 3; ++i) budget.record_success();
  budget.record_failure();
  ASSERT_TRUE(budget.try_acquire_retry(RetryCost::plain, now));
  budget.record_success(/*retry=*/true);
  budget.release_retry();
  EXPECT_DOUBLE_EQ(*registry.value("mend_agent_actual_success_ratio", {"reviewer"}), 0.8);
  EXPECT_DOUBLE_EQ(*registry.value("mend_agent_effective_success_ratio", {"reviewer"}), 1.0);
  EXPECT_DOUBLE_EQ(*registry.value("mend_retry_budget_spent", {"reviewer"}), 1.0);
  EXPECT_DOUBLE_EQ(*registry.value("mend_retry_budget_allowance", {"reviewer"}), 2.0);
  EXPECT_THAT(registry.render(), HasSubstr("# TYPE mend_agent_effective_success_ratio gauge"));
}

TEST(DaemonMetricsTest, EmptyReadingsShowNoSamples) {
  MetricsRegistry registry;
  DaemonMetrics metrics(registry);
  metrics.add_readings(registry, {});
  const std::string text = registry.render();
  EXPECT_THAT(text, HasSubstr("# TYPE mend_circuit_state gauge"));
  EXPECT_THAT(text, Not(HasSubstr("mend_circuit_state{")));
  EXPECT_EQ(registry.value("mend_event_stream_clients"), std::nullopt);
  EXPECT_EQ(registry.value("mend_replica_ejected", {"reviewer", "0"}), std::nullopt);
}

TEST(DaemonMetricsTest, AWorkflowEventHasTheEventStreamsShapeForItsKind) {
  const WallTime at = ManualClock::kDefaultWallStart;
  Event retry;
  retry.kind = EventKind::retry_scheduled;
  retry.source = "reviewer";
  retry.task_id = "t-1";
  retry.attempt = 2;
  retry.error_type = ErrorType::network_timeout;
  retry.severity = Severity::medium;
  retry.delay = std::chrono::milliseconds(1500);
  nlohmann::json j = nlohmann::json::parse(workflow_event_json(retry, at));
  EXPECT_EQ(j["kind"], "retry_scheduled");
  EXPECT_EQ(j["at"], "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(j["source"], "reviewer");
  EXPECT_EQ(j["task_id"], "t-1");
  EXPECT_EQ(j["attempt"], 2);
  EXPECT_EQ(j["error_type"], "network_timeout");
  EXPECT_EQ(j["severity"], "medium");
  EXPECT_DOUBLE_EQ(j["delay_seconds"].get<double>(), 1.5);
  EXPECT_FALSE(j.contains("from"));

  Event transition;
  transition.kind = EventKind::circuit_transition;
  transition.source = "reviewer";
  transition.from = CircuitState::closed;
  transition.to = CircuitState::open;
  transition.detail = "5 failures in a row";
  j = nlohmann::json::parse(workflow_event_json(transition, at));
  EXPECT_EQ(j["from"], "closed");
  EXPECT_EQ(j["to"], "open");
  EXPECT_EQ(j["detail"], "5 failures in a row");
  EXPECT_FALSE(j.contains("task_id"));
  EXPECT_FALSE(j.contains("attempt"));
  EXPECT_FALSE(j.contains("delay_seconds"));

  // A source that is not UTF-8 (an agent's name comes from configuration) still makes JSON.
  transition.source = std::string("bad\xff", 4);
  EXPECT_NO_THROW(j = nlohmann::json::parse(workflow_event_json(transition, at)));
}

TEST(DaemonMetricsTest, ScalingIsCountedByDirectionAndReplicasInServiceReadAtEachScrape) {
  MetricsRegistry registry;
  DaemonMetrics metrics(registry);
  std::map<std::string, int> serving = {{"reviewer", 1}};
  metrics.add_readings(registry, {.replicas_in_service = [&] { return serving; }});
  metrics.scaling->with({"reviewer", "up"}).inc();
  EXPECT_EQ(registry.value("mend_agent_replicas", {"reviewer"}), 1.0);
  serving["reviewer"] = 2;
  EXPECT_EQ(registry.value("mend_agent_replicas", {"reviewer"}), 2.0);
  const std::string text = registry.render();
  EXPECT_THAT(text, HasSubstr("# TYPE mend_replica_scaling_total counter"));
  EXPECT_THAT(text, HasSubstr("mend_replica_scaling_total{agent=\"reviewer\",direction=\"up\"} 1"));
  EXPECT_THAT(text, HasSubstr("# TYPE mend_agent_replicas gauge"));
}

TEST(DaemonMetricsTest, AScalingEventHasTheEventStreamsShape) {
  const WallTime at = ManualClock::kDefaultWallStart;
  nlohmann::json j = nlohmann::json::parse(scaling_event_json(
      {"reviewer", "scale_up", "", 2, "", "saturated: 3 calls refused for want of capacity"}, at));
  EXPECT_EQ(j["kind"], "replica_scaling");
  EXPECT_EQ(j["at"], "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(j["source"], "reviewer");
  EXPECT_EQ(j["action"], "scale_up");
  EXPECT_EQ(j["replicas"], 2);
  EXPECT_EQ(j["detail"], "saturated: 3 calls refused for want of capacity");
  EXPECT_FALSE(j.contains("held"));
  EXPECT_FALSE(j.contains("process"));
  j = nlohmann::json::parse(scaling_event_json(
      {"reviewer", "hold", "at_max", 4, "", "saturated ... at the maximum"}, at));
  EXPECT_EQ(j["held"], "at_max");
  j = nlohmann::json::parse(
      scaling_event_json({"reviewer", "scale_down", "", 1, "reviewer#1", "load low"}, at));
  EXPECT_EQ(j["process"], "reviewer#1");
}

}  // namespace
}  // namespace mend::server_detail
