// `mend serve` scaling a supervised agent with `replicas: {min, max}` (the specification's
// "Resource Recovery: Scale Resources, Health Recheck"): saturation starts another replica, which
// takes calls once its readiness probe says so; once the load stops, the extra replica is retired.
// Short configured intervals, every loop bounded in count and time.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "serve_fixture.h"
#include "serve_test_support.h"

namespace mend::testing {
namespace {

using serve_test_support::outcome_status;
using ::testing::HasSubstr;

// The daemon's last `replay` events, as GET /v1/events?replay= sends them first (read for at most
// `limit`, or until `until` appears).
std::string replayed_events(const std::string& base, const std::string& until,
                            std::chrono::milliseconds limit) {
  const auto port = static_cast<std::uint16_t>(std::stoi(base.substr(base.rfind(':') + 1)));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string stream;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return stream;
  }
  const std::string request = "GET /v1/events?replay=256 HTTP/1.1\r\nHost: x\r\n\r\n";
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return stream;
  }
  timeval tv{0, 100 * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (stream.find(until) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    char buffer[8192];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) stream.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return stream;
}

// The reviewer as the sample agent taking 300 ms a task, scaled from 1 to 2 replicas when its
// latency is over 100 ms, probed every 100 ms.
std::string slow_scaled_reviewer(const std::string& scale_down_delay) {
  return "  - name: reviewer\n    command: " + std::string(kSampleAgentBinary) +
         "\n    args: [--port, \"{port}\", --name, reviewer, --latency, \"300\"]\n"
         "    capabilities: [code_review]\n    stop_timeout: 2s\n"
         "    replicas: {min: 1, max: 2}\n"
         "    scaling:\n"
         "      interval: 100ms\n"
         "      latency_threshold: 100ms\n"
         "      scale_up_cooldown: 1s\n"
         "      scale_down_delay: " +
         scale_down_delay +
         "\n"
         "      start_timeout: 20s\n"
         "    probes:\n"
         "      startup: {period: 100ms, failure_threshold: 100}\n"
         "      readiness: {period: 100ms, failure_threshold: 3}\n"
         "      liveness: {period: 200ms, failure_threshold: 3}\n";
}

TEST_F(ServeTest, ASaturatedAgentIsScaledUpAndBackDownOnceTheLoadStops) {
  // Every task takes 300 ms, over the 100 ms latency threshold: saturated while tasks run.
  start_daemon(config_yaml(slow_scaled_reviewer(/*scale_down_delay=*/"1s")));
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(agent("reviewer")["replicas"].size(), 1u);
  EXPECT_THAT(metrics(), HasSubstr("mend_agent_replicas{agent=\"reviewer\"} 1"));

  // Load: tasks one after the other until the second replica is in service (at most 40 tasks,
  // 30 s).
  int tasks = 0;
  const auto load_deadline = std::chrono::steady_clock::now() + 30s;
  bool scaled_up = false;
  while (!scaled_up && tasks < 40 && std::chrono::steady_clock::now() < load_deadline) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "succeeded") << r.text;
    ++tasks;
    scaled_up = metrics().find("mend_agent_replicas{agent=\"reviewer\"} 2") != std::string::npos;
  }
  ASSERT_TRUE(scaled_up) << "after " << tasks << " tasks; daemon log:\n" << log();
  json replicas = agent("reviewer")["replicas"];
  ASSERT_EQ(replicas.size(), 2u) << replicas.dump();
  EXPECT_EQ(replicas[1]["process"], "reviewer#1");
  EXPECT_TRUE(replicas[1]["ready"].get<bool>()) << replicas.dump();  // the health recheck
  // Under load at the maximum: no third replica; both take calls.
  for (int i = 0; i < 4; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "succeeded") << r.text;
  }
  EXPECT_EQ(agent("reviewer")["replicas"].size(), 2u);
  const std::string second = agent("reviewer")["replicas"][1]["url"].get<std::string>();
  EXPECT_GE(call("GET", second + "/admin/chaos").body["counters"]["tasks_received"].get<int>(), 1);

  // The load stops: after the scale-down delay the extra replica is retired and stopped. An
  // operator holds the circuit open meanwhile: the agent's new breaker (its replicas changed)
  // goes on from the old one, and stays open.
  ASSERT_EQ(post("/v1/agents/reviewer/circuit", {{"state", "open"}}).status, 200);
  wait_until(
      [&] {
        return metrics().find("mend_agent_replicas{agent=\"reviewer\"} 1") != std::string::npos &&
               agent("reviewer")["replicas"].size() == 1u;
      },
      15s, "the second replica to be retired");
  const std::string text = metrics();
  EXPECT_THAT(text, HasSubstr("mend_replica_scaling_total{agent=\"reviewer\",direction=\"up\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("mend_replica_scaling_total{agent=\"reviewer\",direction=\"down\"} 1"));
  EXPECT_THAT(log(), HasSubstr("stopped reviewer#1 (retired)"));
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "isolated");
  ASSERT_EQ(post("/v1/agents/reviewer/circuit", {{"state", "closed"}}).status, 200);
  // The one left still answers.
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded") << r.text;

  // Every decision was an event, in order: up, ready, (held at the maximum), down.
  const std::string events = replayed_events(base_, "\"action\":\"scale_down\"", 3s);
  const std::size_t up = events.find("\"action\":\"scale_up\"");
  const std::size_t ready = events.find("\"action\":\"replica_ready\"");
  const std::size_t down = events.find("\"action\":\"scale_down\"");
  ASSERT_NE(up, std::string::npos) << events;
  ASSERT_NE(ready, std::string::npos) << events;
  ASSERT_NE(down, std::string::npos) << events;
  EXPECT_LT(up, ready);
  EXPECT_LT(ready, down);
  EXPECT_THAT(events, HasSubstr("event: replica_scaling"));
  EXPECT_THAT(events, HasSubstr("over the 100 ms threshold; scaling up from 1 to 2 replicas"));
  EXPECT_THAT(events, HasSubstr("\"process\":\"reviewer#1\""));
}

TEST_F(ServeTest, LoadThroughARelayScalesTheAgentUpAndTheNewReplicaTakesRelayedCalls) {
  // As above, but the only load is relayed requests: the relay's calls (their latency, counted
  // at its flushes) are what the scaler reads. A few seconds: each request takes 300 ms.
  start_daemon(config_yaml(slow_scaled_reviewer(/*scale_down_delay=*/"30s"),
                           "relays:\n  - {agent: reviewer, port: 0}\n"));
  ASSERT_FALSE(HasFatalFailure());
  const std::string text = log();
  const std::string marker = "relay for reviewer on ";
  const std::size_t at = text.find(marker);
  ASSERT_NE(at, std::string::npos) << text;
  const std::string relay =
      text.substr(at + marker.size(), text.find('\n', at) - at - marker.size());
  const std::string body = json({{"id", "t-1"},
                                 {"type", "code_review"},
                                 {"attempt", 0},
                                 {"payload", {{"content", "int main() {}\n"}}}})
                               .dump();
  int requests = 0;
  bool scaled_up = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!scaled_up && requests < 60 && std::chrono::steady_clock::now() < deadline) {
    Reply r = call("POST", relay + "/task", body);
    ASSERT_EQ(r.status, 200) << r.text;
    ++requests;
    scaled_up = metrics().find("mend_agent_replicas{agent=\"reviewer\"} 2") != std::string::npos;
  }
  ASSERT_TRUE(scaled_up) << "after " << requests << " relayed requests; daemon log:\n" << log();
  EXPECT_THAT(log(), HasSubstr("scaling up from 1 to 2 replicas"));
  // The first replica's balancer went on from the generation before the scale-up: it has
  // counted every request so far.
  EXPECT_GE(agent("reviewer")["replicas"][0]["balancer"]["calls"].get<int>(), requests)
      << agent("reviewer").dump();
  // The new replica is among the relay's replicas: relayed requests reach it.
  const std::string second = agent("reviewer")["replicas"][1]["url"].get<std::string>();
  for (int i = 0; i < 4; ++i) ASSERT_EQ(call("POST", relay + "/task", body).status, 200);
  EXPECT_GE(call("GET", second + "/admin/chaos").body["counters"]["tasks_received"].get<int>(), 1);
}

TEST_F(ServeTest, RefusalsForWantOfCapacityScaleUpAndTheAgentsLimitGrowsWithItsReplicas) {
  // One call per replica at once; each takes 400 ms. Tasks sent together: one runs, the others
  // find the agent full (no_capacity) and get the degraded answer.
  const std::string scaled = agent_yaml("reviewer",
                                        "    replicas: {min: 1, max: 2}\n"
                                        "    scaling:\n"
                                        "      interval: 100ms\n"
                                        "      replica_capacity: 1\n"
                                        "      scale_up_cooldown: 0s\n"
                                        "      scale_down_delay: 1s\n");
  start_daemon(config_yaml(scaled));
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(agent("reviewer")["max_concurrent"], 1);
  chaos("reviewer", {{"latency_ms", 400}});
  for (int i = 0; i < 4; ++i) {
    Reply r = post("/v1/tasks", {{"type", "code_review"},
                                 {"agent", "reviewer"},
                                 {"payload", {{"content", "int main() {}\n"}}}});
    ASSERT_EQ(r.status, 202) << r.text;
  }
  wait_until(
      [&] {
        return metrics().find("mend_agent_replicas{agent=\"reviewer\"} 2") != std::string::npos;
      },
      15s, "a second replica in service");
  // The agent now takes two calls at once: one per replica in service.
  EXPECT_EQ(agent("reviewer")["max_concurrent"], 2);
  const std::string text = log();
  EXPECT_THAT(text, HasSubstr("calls refused for want of capacity"));
  EXPECT_THAT(text, HasSubstr("scaling up from 1 to 2 replicas"));
  // Quiet again: back to one replica, and to one call at once.
  wait_until(
      [&] {
        return metrics().find("mend_agent_replicas{agent=\"reviewer\"} 1") != std::string::npos;
      },
      15s, "the second replica to be retired");
  EXPECT_EQ(agent("reviewer")["max_concurrent"], 1);
}

TEST_F(ServeTest, AnAgentThatStaysQuietKeepsItsMinimum) {
  const std::string scaled =
      agent_yaml("reviewer",
                 "    replicas: {min: 2, max: 3}\n"
                 "    scaling: {interval: 100ms, scale_down_delay: 200ms}\n");
  start_daemon(config_yaml(scaled));
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(agent("reviewer")["replicas"].size(), 2u);
  // Ten observations' worth of quiet, a few tasks of no latency: never below the minimum, never
  // above it without saturation.
  for (int i = 0; i < 5; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(agent("reviewer")["replicas"].size(), 2u);
  EXPECT_THAT(metrics(), HasSubstr("mend_agent_replicas{agent=\"reviewer\"} 2"));
  EXPECT_EQ(metrics().find("mend_replica_scaling_total{agent=\"reviewer\""), std::string::npos);
}

}  // namespace
}  // namespace mend::testing
