// `mend serve` as its own process, with supervised sample agents, checked over HTTP on a short
// configured timescale (backoff base 50 ms, breaker recovery 1 s, probes every 100-200 ms).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <future>

#include "mend/sqlite_store.h"
#include "mend_test/ports.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using ::testing::HasSubstr;

std::string outcome_status(const Reply& r) {
  return r.body["outcome"]["status"].get<std::string>();
}

// A URL agent (mend does not start it) takes traffic before any probe has answered; the log must
// not present that as a fact. Its readiness probes then fail, and the log says so.
TEST_F(ServeTest, AUrlAgentIsHealthyByAssumptionUntilItsProbesAnswerAndTheLogSaysWhich) {
  RefusingPort nobody;
  start_daemon_without_waiting(
      config_yaml("  - name: outside\n    url: " + nobody.url() +
                  "\n    capabilities: [code_review]\n"
                  "    probes:\n      readiness: {period: 100ms, failure_threshold: 2}\n"));
  ASSERT_FALSE(HasFatalFailure());
  wait_until(
      [&] {
        return log().find("agent outside is unhealthy: no replica is ready") != std::string::npos;
      },
      10s, "the failed probes to be logged");
  const std::string text = log();
  EXPECT_THAT(text, HasSubstr("agent outside is healthy (assumed: mend does not start it, and no "
                              "probe has answered yet)"));
  EXPECT_THAT(text, HasSubstr("agent outside: not ready: "));
  EXPECT_LT(text.find("is healthy (assumed"), text.find("agent outside: not ready: "));
  EXPECT_LT(text.find("agent outside: not ready: "),
            text.find("is unhealthy: no replica is ready"));
}

TEST_F(ServeTest, A503IsRetriedAndThenAnswered) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"fail_next", {{{"kind", "503"}, {"count", 2}}}}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded_after_retry");
  const json& attempts = r.body["outcome"]["attempts"];
  ASSERT_EQ(attempts.size(), 3u) << r.text;
  EXPECT_EQ(attempts[0]["error_type"], "temporary_unavailable");
  EXPECT_EQ(attempts[0]["decision"], "retry");
  EXPECT_EQ(attempts[1]["decision"], "retry");
  EXPECT_EQ(attempts[2]["succeeded"], true);
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer");
  EXPECT_THAT(metrics(), HasSubstr("mend_retries_total{agent=\"reviewer\"} 2"));
}

TEST_F(ServeTest, A429WaitsItsRetryAfter) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"retry_after", 1.0}, {"fail_next", {{{"kind", "429"}, {"count", 1}}}}});
  const auto started = std::chrono::steady_clock::now();
  Reply r = submit("reviewer");
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded_after_retry");
  const json& attempts = r.body["outcome"]["attempts"];
  ASSERT_EQ(attempts.size(), 2u) << r.text;
  EXPECT_EQ(attempts[0]["error_type"], "rate_limit_exceeded");
  // The agent's Retry-After (1 s) replaced the backoff (50 ms x2 for a rate limit).
  EXPECT_DOUBLE_EQ(attempts[0]["delay_seconds"].get<double>(), 1.0);
  EXPECT_GE(waited, 1.0);
}

TEST_F(ServeTest, FiveFailuresOpenTheCircuitAndThreeSuccessesAfterTheTimeoutCloseIt) {
  start_daemon(config_yaml(default_agents(), "fallback_chains: {reviewer: [backup]}\n"));
  // A logic error: never retried, so each task makes exactly one call to the reviewer.
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  for (int i = 0; i < 5; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "fallback");
    EXPECT_EQ(r.body["outcome"]["answered_by"], "backup");
  }
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "open");
  const int calls_when_open = agent_stats("reviewer")["tasks_received"].get<int>();
  EXPECT_EQ(calls_when_open, 5);

  // While open: rejected without reaching the agent.
  for (int i = 0; i < 3; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["outcome"]["answered_by"], "backup");
    ASSERT_FALSE(r.body["outcome"]["skipped"].empty()) << r.text;
    EXPECT_EQ(r.body["outcome"]["skipped"][0]["agent"], "reviewer");
    EXPECT_EQ(r.body["outcome"]["skipped"][0]["reason"], "circuit_open");
  }
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"].get<int>(), calls_when_open);

  // The agent recovers; after the recovery timeout (1 s) a probe goes through, and three
  // successes close the circuit.
  chaos("reviewer", {{"fail", json::object()}});
  wait_until([&] { return agent("reviewer")["circuit"].value("probe_in_seconds", 0.0) <= 0.0; }, 5s,
             "the recovery timeout");
  for (int i = 0; i < 3; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "succeeded") << r.text;
    EXPECT_EQ(agent("reviewer")["circuit"]["state"], i < 2 ? "half_open" : "closed");
  }
  const std::string m = metrics();
  EXPECT_THAT(m, HasSubstr("mend_circuit_transitions_total{agent=\"reviewer\",to=\"open\"} 1"));
  EXPECT_THAT(m, HasSubstr("mend_circuit_transitions_total{agent=\"reviewer\",to=\"closed\"} 1"));
  // The log says why, each time.
  EXPECT_THAT(log(), HasSubstr("warning circuit of reviewer closed -> open: 5 failures"));
  EXPECT_THAT(log(), HasSubstr("circuit of reviewer open -> half_open: recovery timeout elapsed"));
  EXPECT_THAT(log(), HasSubstr("circuit of reviewer half_open -> closed: 3 half-open probes"));
}

TEST_F(ServeTest, ATaskFallsBackAlongItsChainAndDegradesWhenEveryAgentFails) {
  start_daemon(config_yaml(default_agents(), "fallback_chains: {reviewer: [backup]}\n"));
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "fallback");
  EXPECT_EQ(r.body["outcome"]["answered_by"], "backup");

  chaos("backup", {{"fail", {{"500", 1.0}}}});
  chaos("generalist", {{"fail", {{"500", 1.0}}}});
  r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  const json& outcome = r.body["outcome"];
  EXPECT_EQ(outcome["status"], "degraded");
  EXPECT_EQ(outcome["answered_by"], "degraded_service");
  EXPECT_EQ(outcome["answer"]["status"], "degraded");
  // processing_failed is medium: the team is notified and a ticket opened.
  ASSERT_TRUE(outcome.contains("escalation")) << r.text;
  EXPECT_EQ(outcome["escalation"]["action"], "notified_and_ticketed");
  EXPECT_THAT(outcome["escalation"]["record"].get<std::string>(), HasSubstr("TKT-"));
  EXPECT_THAT(metrics(), HasSubstr("mend_degraded_answers_total{task_type=\"code_review\"} 1"));
}

TEST_F(ServeTest, AKilledAgentIsRestartedBecomesReadyAndServesAgain) {
  start_daemon(config_yaml(default_agents()));
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  ASSERT_GT(old_pid, 0);
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  wait_until_restarted("reviewer", old_pid);
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded") << r.text << "\ndaemon log:\n" << log();
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer");
  EXPECT_THAT(metrics(),
              HasSubstr("mend_agent_restarts_total{agent=\"reviewer\",reason=\"crash\"} 1"));
  EXPECT_EQ(agent("reviewer")["counters"]["restarts"], 1);
}

TEST_F(ServeTest, ADatabaseErrorIsHealedThroughTheAgentsHookAndTheTaskAnswered) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"database_down", true}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  const json& outcome = r.body["outcome"];
  EXPECT_EQ(outcome["status"], "succeeded_after_retry") << r.text;
  EXPECT_EQ(outcome["answered_by"], "reviewer");
  ASSERT_EQ(outcome["healing"].size(), 1u) << r.text;
  EXPECT_EQ(outcome["healing"][0]["issue"], "database_connection_lost");
  EXPECT_EQ(outcome["healing"][0]["recovered"], true);
  json stats = call("GET", agent_url("reviewer") + "/stats").body;
  EXPECT_EQ(stats["admin_calls"]["reconnect-database"], 1) << stats.dump();
}

TEST_F(ServeTest, AnAgentFailingItsLivenessProbeIsRestartedAndTakesTrafficAgain) {
  // Readiness is slow to give up here, so that liveness acts first (readiness that fails runs
  // self-healing: AnAgentThatTurnsUnhealthyIsHealedAndOnCallGetsARecord).
  start_daemon(config_yaml(agent_yaml("reviewer", "", "code_review",
                                      "      startup: {period: 100ms, failure_threshold: 100}\n"
                                      "      readiness: {period: 200ms, failure_threshold: 100}\n"
                                      "      liveness: {period: 200ms, failure_threshold: 3}\n") +
                           agent_yaml("backup") +
                           agent_yaml("generalist", "    generalist: true\n")));
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  // /health answers 503 from now on: readiness takes the agent out of traffic, liveness (3
  // failures, every 200 ms) restarts it; the new process starts healthy.
  chaos("reviewer", {{"unhealthy", true}});
  wait_until(
      [&] {
        json replica = agent("reviewer")["replicas"][0];
        return replica["pid"].get<int>() != old_pid && replica["ready"].get<bool>();
      },
      15s, "the reviewer to be restarted by its liveness probe");
  EXPECT_THAT(metrics(),
              HasSubstr("mend_agent_restarts_total{agent=\"reviewer\",reason=\"probe\"} 1"));
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer") << r.text << log();
}

// With the default probes (startup every 10 s), an agent that is not yet listening at its first
// startup probe is probed again within 100 ms (doubling), not a period later: it takes traffic
// about as soon as it listens, after a start and after a restart. Before (issue 15), every start
// and restart left it unready, its tasks degraded, for 10 s.
TEST_F(ServeTest, WithTheDefaultProbesAnAgentIsReadySoonAfterItListensAtStartAndRestart) {
  const std::string defaults =
      "      startup: {period: 10s, failure_threshold: 30}\n"
      "      readiness: {period: 10s}\n"
      "      liveness: {period: 10s}\n";
  const auto started = std::chrono::steady_clock::now();
  start_daemon_without_waiting(config_yaml(agent_yaml("reviewer", "", "code_review", defaults)));
  ASSERT_FALSE(HasFatalFailure());
  wait_until([&] { return get("/readyz").status == 200; }, 20s, "the reviewer to be ready");
  ASSERT_FALSE(HasFatalFailure());
  const auto ready_after_start = std::chrono::steady_clock::now() - started;
  // Half the probe period: the agent starts in well under a second, even under a sanitizer.
  EXPECT_LT(ready_after_start, 5s);

  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  wait_until(
      [&] {
        json replica = agent("reviewer")["replicas"][0];
        return replica["pid"].get<int>() != old_pid && replica["ready"].get<bool>();
      },
      20s, "the reviewer to be restarted and ready");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 5s);
  std::cout << "[ probes ] ready "
            << std::chrono::duration_cast<std::chrono::milliseconds>(ready_after_start).count()
            << " ms after the start, "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - killed)
                   .count()
            << " ms after a SIGKILL\n";
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer") << r.text;
}

// An agent whose /health says unhealthy is not just skipped: self-healing runs (a restart, for
// an unresponsive service) and on-call gets a record that says what happened.
TEST_F(ServeTest, AnAgentThatTurnsUnhealthyIsHealedAndOnCallGetsARecord) {
  start_daemon(config_yaml(agent_yaml("reviewer", "", "code_review",
                                      "      startup: {period: 100ms, failure_threshold: 100}\n"
                                      "      readiness: {period: 100ms, failure_threshold: 2}\n"
                                      "      liveness: {period: 60s}\n")));
  ASSERT_FALSE(HasFatalFailure());
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  chaos("reviewer", {{"unhealthy", true}});
  json record;
  wait_until(
      [&] {
        const Reply records = get("/v1/escalations");  // named: the loop reads into it
        for (const json& r : records.body["records"]) {
          if (r["agent"] == "reviewer") record = r;
        }
        return !record.is_null();
      },
      10s, "a record for the unhealthy reviewer");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(record["error_type"], "service_unavailable");
  EXPECT_THAT(record["description"].get<std::string>(), HasSubstr("is unhealthy"));
  EXPECT_THAT(record["description"].get<std::string>(), HasSubstr("self-healing"));
  wait_until_restarted("reviewer", old_pid);  // the restart was self-healing's
  EXPECT_THAT(log(), HasSubstr("agent reviewer is unhealthy ("));
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer") << r.text;
}

TEST_F(ServeTest, AnAgentThatKeepsCrashingIsRestartedWithBackoffAndEscalatedAsAnIncident) {
  const std::string crasher =
      "  - name: crasher\n    command: /bin/sh\n    args: [-c, \"exit 3\"]\n"
      "    capabilities: [nothing]\n";
  start_daemon_without_waiting(config_yaml(
      agent_yaml("reviewer") + crasher, "  intensity_max_restarts: 2\n  intensity_period: 1m\n"));
  wait_until(
      [&] {
        Reply incidents = get("/v1/incidents");
        return incidents.status == 200 && incidents.body["records"].size() == 1;
      },
      15s, "an incident about the crashing agent");
  const json incident = get("/v1/incidents").body["records"][0];
  EXPECT_EQ(incident["agent"], "crasher");
  EXPECT_EQ(incident["level"], "critical");
  EXPECT_THAT(incident["description"].get<std::string>(), HasSubstr("keeps crashing"));
  const json replica = agent("crasher")["replicas"][0];
  EXPECT_GE(replica["restarts"].get<int>(), 2);
  EXPECT_EQ(replica["ready"], false);
  EXPECT_EQ(agent("crasher")["health"], "unhealthy");
  EXPECT_EQ(get("/readyz").status, 503);  // not every agent is ready
  EXPECT_THAT(log(), HasSubstr("exited with status 3"));
}

TEST_F(ServeTest, AnAgentOverItsMemoryLimitIsHealedByClearingItsCachesAndARestart) {
  start_daemon(config_yaml(agent_yaml("reviewer", "    memory_limit: 4GiB\n")));
  // The limit: what the agent uses now plus 24 MiB (its resident size differs between builds;
  // sanitizers add a lot), applied by a reload that keeps the process.
  const json replica = agent("reviewer")["replicas"][0];
  const int old_pid = replica["pid"].get<int>();
  const std::uint64_t rss = replica["rss_bytes"].get<std::uint64_t>();
  ASSERT_GT(rss, 0u);
  const std::uint64_t limit_kib = rss / 1024 + 24 * 1024;
  write_config(config_yaml(
      agent_yaml("reviewer", "    memory_limit: " + std::to_string(limit_kib) + "KiB\n")));
  daemon_->signal(SIGHUP);
  wait_until(
      [&] {
        return metrics().find("mend_config_reloads_total{result=\"applied\"} 1") !=
               std::string::npos;
      },
      10s, "the reload");
  EXPECT_EQ(agent("reviewer")["replicas"][0]["pid"].get<int>(), old_pid);

  // 48 MiB more: over the limit. high_memory_usage's recovery: clear the caches, restart
  // gracefully, wait until ready.
  chaos("reviewer", {{"memory_growth_kib", 48 * 1024}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  wait_until(
      [&] {
        return metrics().find(
                   "mend_agent_restarts_total{agent=\"reviewer\",reason=\"recovery\"} 1") !=
               std::string::npos;
      },
      15s, "the memory watch to heal the agent");
  wait_until(
      [&] {
        json now = agent("reviewer")["replicas"][0];
        return now["pid"].get<int>() != old_pid && now["ready"].get<bool>();
      },
      15s, "the restarted agent to be ready");
  const std::string daemon_log = log();
  EXPECT_THAT(daemon_log, HasSubstr("of its memory limit: self-healing"));
  EXPECT_THAT(daemon_log, HasSubstr("restarting reviewer#0 (recovery, graceful)"));
  EXPECT_EQ(outcome_status(submit("reviewer")), "succeeded");
}

TEST_F(ServeTest, TicketsAndIncidentsAreOpenedThenAcknowledgedAndResolvedThroughTheApi) {
  // No chain, no generalist: each agent's failure is its task's last word.
  start_daemon(config_yaml(agent_yaml("reviewer") + agent_yaml("pager", "", "paging")));
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  chaos("pager", {{"fail", {{"critical", 1.0}}}});
  Reply ticket_task = submit("reviewer");
  ASSERT_EQ(ticket_task.status, 200) << ticket_task.text;
  Reply incident_task = submit("pager");
  ASSERT_EQ(incident_task.status, 200) << incident_task.text;
  EXPECT_EQ(incident_task.body["outcome"]["escalation"]["action"], "critical_incident");

  Reply tickets = get("/v1/tickets?status=open");
  ASSERT_EQ(tickets.status, 200) << tickets.text;
  ASSERT_EQ(tickets.body["records"].size(), 1u) << tickets.text;
  const std::string ticket = tickets.body["records"][0]["id"];
  EXPECT_THAT(ticket, HasSubstr("TKT-"));
  EXPECT_EQ(tickets.body["records"][0]["level"], "medium");

  Reply incidents = get("/v1/incidents");
  ASSERT_EQ(incidents.body["records"].size(), 1u) << incidents.text;
  const json incident = incidents.body["records"][0];
  const std::string id = incident["id"];
  EXPECT_THAT(id, HasSubstr("INC-"));
  EXPECT_EQ(incident["war_room_url"], "https://war-room.test/" + id);
  EXPECT_EQ(incident["level"], "critical");

  // Mutating calls need the token.
  Reply refused = post("/v1/incidents/" + id + "/acknowledge", {{"by", "alice"}}, false);
  EXPECT_EQ(refused.status, 401) << refused.text;
  Reply acked = post("/v1/incidents/" + id + "/acknowledge", {{"by", "alice"}});
  ASSERT_EQ(acked.status, 200) << acked.text;
  EXPECT_EQ(acked.body["status"], "acknowledged");
  EXPECT_EQ(acked.body["acknowledged_by"], "alice");
  Reply resolved = post("/v1/incidents/" + id + "/resolve", {{"by", "alice"}});
  ASSERT_EQ(resolved.status, 200) << resolved.text;
  EXPECT_EQ(resolved.body["status"], "resolved");
  // Resolved records cannot be acknowledged again.
  EXPECT_EQ(post("/v1/incidents/" + id + "/acknowledge", {{"by", "bob"}}).status, 409);

  Reply t_ack = post("/v1/tickets/" + ticket + "/acknowledge", {{"by", "bob"}});
  ASSERT_EQ(t_ack.status, 200) << t_ack.text;
  Reply t_res = post("/v1/tickets/" + ticket + "/resolve", {{"by", "bob"}});
  ASSERT_EQ(t_res.status, 200) << t_res.text;

  Reply shown = get("/v1/incidents/" + id);
  ASSERT_EQ(shown.status, 200) << shown.text;
  std::vector<std::string> events;
  for (const json& e : shown.body["timeline"]) events.push_back(e["event"]);
  EXPECT_THAT(events, ::testing::IsSupersetOf({"opened", "acknowledged", "resolved"}));
  // A ticket id under /v1/incidents is not found.
  EXPECT_EQ(get("/v1/incidents/" + ticket).status, 404);

  // The webhook heard the incident's trigger, acknowledgement and resolution.
  wait_until(
      [&] {
        int seen = 0;
        for (const json& n : webhook_.received()) {
          if (n.is_object() && n.dump().find(id) != std::string::npos) ++seen;
        }
        return seen >= 3;
      },
      10s, "three notifications about " + id);
}

TEST_F(ServeTest, BadRequestsGet4xxAnswersAndTheDaemonKeepsServing) {
  start_daemon(config_yaml(default_agents()));
  auto raw = [&](const std::string& body) {
    return call("POST", base_ + "/v1/tasks?wait=5", body,
                {{"Authorization", std::string("Bearer ") + kToken}});
  };
  Reply malformed = raw("{\"type\": \"code_review\", ");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_THAT(malformed.text, HasSubstr("malformed JSON"));
  Reply unknown = raw(R"({"type":"code_review","agent":"nobody"})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.text, HasSubstr("unknown agent 'nobody'"));
  EXPECT_EQ(raw(R"({"agent":"reviewer"})").status, 400);                             // no type
  EXPECT_EQ(raw(R"({"type":"code_review","agent":"reviewer","x":1})").status, 400);  // field
  EXPECT_EQ(raw(R"([1,2,3])").status, 400);                                   // not an object
  EXPECT_EQ(raw(std::string(100, '[') + std::string(100, ']')).status, 400);  // too deep
  EXPECT_EQ(raw(std::string(100 * 1024, ' ')).status, 413);                   // over 64 KiB
  EXPECT_EQ(call("DELETE", base_ + "/v1/tasks").status, 405);
  EXPECT_EQ(get("/v1/nothing-here").status, 404);
  EXPECT_EQ(get("/v1/agents/nobody").status, 404);
  EXPECT_EQ(get("/v1/tasks/no-such-task").status, 404);
  EXPECT_EQ(get("/v1/tasks/x?wait=abc").status, 400);
  EXPECT_EQ(post("/v1/agents/reviewer/circuit", {{"state", "sideways"}}).status, 400);
  EXPECT_EQ(post("/v1/tickets/TKT-999/acknowledge", {{"by", "x"}}).status, 404);

  // Garbage on a raw socket: answered 400 or closed; the daemon is unharmed.
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port =
        htons(static_cast<std::uint16_t>(std::stoi(base_.substr(base_.rfind(':') + 1))));
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const char garbage[] = "\x16\x03\x01\xff\xff GARBAGE \r\n\r\n";
    ASSERT_GT(::write(fd, garbage, sizeof garbage - 1), 0);
    char buffer[256] = {};
    (void)::read(fd, buffer, sizeof buffer - 1);
    ::close(fd);
  }

  EXPECT_EQ(get("/healthz").status, 200);
  Reply ok = submit("reviewer");
  ASSERT_EQ(ok.status, 200) << ok.text;
  EXPECT_EQ(outcome_status(ok), "succeeded");
}

TEST_F(ServeTest, AsynchronousSubmissionWithAnIdempotencyKeyIsPolledAndReplayed) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"latency_ms", 300}});
  json task = {{"type", "code_review"}, {"agent", "reviewer"}, {"payload", {{"content", "x"}}}};
  Reply accepted = post("/v1/tasks", task, true, {{"Idempotency-Key", "order-42"}});
  ASSERT_EQ(accepted.status, 202) << accepted.text;
  const std::string id = accepted.body["id"];
  Reply replay = post("/v1/tasks", task, true, {{"Idempotency-Key", "order-42"}});
  EXPECT_EQ(replay.body["id"], id);
  EXPECT_EQ(replay.header("Idempotent-Replayed"), "true");
  task["type"] = "deployment";
  EXPECT_EQ(post("/v1/tasks", task, true, {{"Idempotency-Key", "order-42"}}).status, 409);

  Reply done = get("/v1/tasks/" + id + "?wait=10");
  ASSERT_EQ(done.status, 200) << done.text;
  EXPECT_EQ(done.body["state"], "done");
  EXPECT_EQ(done.body["outcome"]["status"], "succeeded");
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"].get<int>(), 1);  // once, not twice
}

// About 4 s: a thousand tasks through a spawned daemon, each waiting out a real backoff (the
// daemon runs on the system clock).
TEST_F(ServeTest, AThousandTasksWaitOutTheirBackoffOnTimersNotThreads) {
  // Every call answers 503; the first retry waits 30 s (+-25 %): a thousand tasks in backoff at
  // once.
  start_daemon(config_yaml(agent_yaml("reviewer",
                                      "    policies: {retry: {backoff: {base: 30s, cap: 60s}}, "
                                      "breaker: {failure_threshold: 100000}}\n")));
  chaos("reviewer", {{"fail", {{"503", 1.0}}}});
  constexpr int kTasks = 1000;
  for (int i = 0; i < kTasks; ++i) {
    Reply accepted = post(
        "/v1/tasks", {{"type", "code_review"}, {"agent", "reviewer"}, {"payload", json::object()}});
    ASSERT_EQ(accepted.status, 202) << accepted.text;
  }
  const std::string retries =
      "mend_retries_total{agent=\"reviewer\"} " + std::to_string(kTasks) + "\n";
  wait_until([&] { return metrics().find(retries) != std::string::npos; }, 20s,
             "every task's first failure and its retry scheduled");
  EXPECT_THAT(metrics(), HasSubstr("mend_tasks_in_flight " + std::to_string(kTasks) + "\n"));
  // Threads: mend's fixed pools, whatever the number of tasks.
  std::ifstream status("/proc/" + std::to_string(daemon_->pid()) + "/status");
  int threads = 0;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) threads = std::stoi(line.substr(8));
  }
  EXPECT_GT(threads, 0);
  EXPECT_LE(threads, 16);
}

TEST_F(ServeTest, TheEventStreamCarriesTheWorkflowsDecisions) {
  start_daemon(config_yaml(default_agents()));
  const std::uint16_t port =
      static_cast<std::uint16_t>(std::stoi(base_.substr(base_.rfind(':') + 1)));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request = "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  timeval tv{0, 200 * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  chaos("reviewer", {{"fail_next", {{{"kind", "503"}, {"count", 1}}}}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  const std::string id = r.body["id"];
  std::string stream;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (stream.find("event: task_finished") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    char buffer[4096];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) stream.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  EXPECT_THAT(stream, HasSubstr("text/event-stream"));
  EXPECT_THAT(stream, HasSubstr("event: retry_scheduled"));
  EXPECT_THAT(stream, HasSubstr("event: task_finished"));
  EXPECT_THAT(stream, HasSubstr("\"task_id\":\"" + id + "\""));
}

TEST_F(ServeTest, SighupAppliesAValidConfigAndKeepsTheRunningOneWhenTheNewOneIsInvalid) {
  start_daemon(config_yaml(default_agents()));
  const int reviewer_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  // A fourth agent; the others unchanged (and not restarted).
  write_config(config_yaml(default_agents() + agent_yaml("linter")));
  daemon_->signal(SIGHUP);
  wait_until([&] { return get("/v1/agents/linter").status == 200; }, 10s, "the new agent");
  wait_until([&] { return get("/readyz").status == 200; }, 10s, "the new agent ready");
  EXPECT_EQ(agent("reviewer")["replicas"][0]["pid"].get<int>(), reviewer_pid);
  Reply r = submit("linter");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "linter");

  // An invalid file: refused, the running configuration stays.
  write_config("agents: [ {name: broken, replicas: many} ]\n");
  Reply reload = post("/v1/reload", json::object());
  EXPECT_EQ(reload.status, 422) << reload.text;
  EXPECT_THAT(reload.text, HasSubstr("replicas"));
  EXPECT_EQ(get("/v1/agents/linter").status, 200);
  EXPECT_THAT(metrics(), HasSubstr("mend_config_reloads_total{result=\"invalid\"} 1"));
  EXPECT_EQ(outcome_status(submit("reviewer")), "succeeded");
}

TEST_F(ServeTest, SigtermDrainsTasksInFlightStopsTheAgentsAndExitsZero) {
  start_daemon(config_yaml(default_agents()));
  std::vector<int> pids;
  for (const char* name : {"reviewer", "backup", "generalist"}) {
    pids.push_back(agent(name)["replicas"][0]["pid"].get<int>());
  }
  chaos("reviewer", {{"latency_ms", 1000}});
  auto slow = std::async(std::launch::async, [&] { return submit("reviewer"); });
  wait_until([&] { return agent("reviewer")["in_flight"].get<int>() == 1; }, 5s,
             "the task to be in flight");
  daemon_->signal(SIGTERM);
  Reply r = slow.get();
  ASSERT_EQ(r.status, 200) << r.text << "\ndaemon log:\n" << log();  // drained, not dropped
  EXPECT_EQ(outcome_status(r), "succeeded");
  std::optional<int> status = daemon_->wait_exit(20s);
  ASSERT_TRUE(status.has_value()) << log();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0) << log();
  for (int pid : pids) EXPECT_FALSE(process_alive(pid)) << pid;
  EXPECT_THAT(log(), HasSubstr("mend stopped"));
  // The journal is written in batches: the drained task's entry was written before mend exited.
  const std::string task_id = json::parse(r.text).at("id").get<std::string>();
  auto store = SqliteStore::open(dir_.file("mend.db"));
  ASSERT_TRUE(store.ok()) << store.error().describe();
  bool journaled = false;
  for (const JournalEntry& e : (*store)->journal(100)) journaled |= e.task_id == task_id;
  EXPECT_TRUE(journaled) << task_id;
}

TEST(CheckConfig, TheExampleIsValidAndABrokenFileNamesEachErrorWithItsLine) {
  ::unsetenv("MEND_BROKEN_YAML_UNSET_TOKEN");  // the broken file expects it unset
  TempDir dir("mend-check");
  {
    ChildProcess ok(kMendBinary, {"check-config", std::string(kSourceDir) + "/examples/mend.yaml"},
                    dir.file("ok.err"));
    std::optional<std::string> line = ok.read_line(10s);
    ASSERT_TRUE(line.has_value());
    EXPECT_THAT(*line, HasSubstr("valid"));
    std::optional<int> status = ok.wait_exit(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(WEXITSTATUS(*status), 0);
  }
  const std::string broken = std::string(kSourceDir) + "/tests/serve/data/broken.yaml";
  ChildProcess bad(kMendBinary, {"check-config", broken}, dir.file("bad.err"));
  std::optional<int> status = bad.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  std::ifstream in(dir.file("bad.err"));
  std::stringstream errors;
  errors << in.rdbuf();
  std::vector<std::string> expected = expected_broken_problems(broken);
  ASSERT_GE(expected.size(), 10u);
  std::vector<std::string> printed;
  for (std::string line; std::getline(errors, line);) printed.push_back(line);
  for (const std::string& problem : expected) {
    EXPECT_THAT(printed, ::testing::Contains(broken + ":" + problem));
  }
  // One line per problem, then the count.
  EXPECT_EQ(printed.size(), expected.size() + 1);
  EXPECT_THAT(printed.back(), HasSubstr(std::to_string(expected.size()) + " problems"));
}

}  // namespace
}  // namespace mend::testing
