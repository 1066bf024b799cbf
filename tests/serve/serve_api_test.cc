// `mend serve`'s HTTP API: tickets and incidents acknowledged and resolved, bad requests
// answered 4xx, asynchronous submission with an idempotency key, the event stream, and what the
// replica balancer tells of each replica.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "serve_fixture.h"
#include "serve_test_support.h"

namespace mend::testing {
namespace {

using serve_test_support::outcome_status;
using ::testing::HasSubstr;

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

TEST_F(ServeTest, EachReplicaShowsItsBalancerAndCallsAreSpreadOverBoth) {
  start_daemon(config_yaml(agent_yaml("reviewer", "    replicas: 2\n")));
  // /readyz needs one ready replica; a replica takes calls once its own probe says it is ready.
  wait_until(
      [&] {
        const json replicas = agent("reviewer")["replicas"];
        return replicas.size() == 2u && replicas[0]["ready"].get<bool>() &&
               replicas[1]["ready"].get<bool>();
      },
      10s, "both replicas ready");
  // One after the other, none outstanding: the balancer alternates between the two.
  for (int i = 0; i < 4; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "succeeded") << r.text;
  }
  const json replicas = agent("reviewer")["replicas"];
  ASSERT_EQ(replicas.size(), 2u) << replicas.dump();
  for (const json& replica : replicas) {
    ASSERT_TRUE(replica.contains("balancer")) << replica.dump();
    const json& b = replica["balancer"];
    EXPECT_TRUE(replica.contains("url")) << replica.dump();  // the replica set's fields stay
    EXPECT_EQ(b["outstanding"], 0) << b.dump();
    EXPECT_GE(b["calls"].get<int>(), 1) << "calls went to one replica only: " << replicas.dump();
    EXPECT_EQ(b["failures"], 0) << b.dump();
    EXPECT_EQ(b["ejected"], false) << b.dump();
    EXPECT_FALSE(b.contains("ejected_for_seconds")) << b.dump();
    for (const char* key : {"ejections", "ejection_multiplier", "consecutive_failures",
                            "window_calls", "window_failures", "average_latency_seconds"}) {
      EXPECT_TRUE(b.contains(key)) << key << " missing: " << b.dump();
    }
  }
  EXPECT_EQ(
      replicas[0]["balancer"]["calls"].get<int>() + replicas[1]["balancer"]["calls"].get<int>(), 4)
      << replicas.dump();
}

}  // namespace
}  // namespace mend::testing
