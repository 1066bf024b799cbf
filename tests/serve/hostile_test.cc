// `mend serve` against clients that try to starve or fool it, over raw loopback sockets: what a
// request's header can refuse is refused before its body is read, framing the server does not
// take is refused and the connection closed, health checks are answered even when every
// connection is taken, and names that would forge a log line or a URL are refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <vector>

#include "mend_test/raw_connection.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Resident memory of a process, from /proc (bytes).
std::size_t rss_bytes(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// A sanitizer's RSS counts its own shadow memory and the quarantine where ASan keeps what was
// freed (up to 256 MB): the memory bounds are measured in the release build only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kRssMeansMendsMemory = false;
#else
constexpr bool kRssMeansMendsMemory = true;
#endif

class HostileClientTest : public ServeTest {
 protected:
  unsigned short port() const {
    return static_cast<unsigned short>(std::stoi(base_.substr(base_.rfind(':') + 1)));
  }
  std::string task_request(const std::string& extra_headers, const std::string& body) const {
    return "POST /v1/tasks HTTP/1.1\r\nHost: mend\r\nContent-Type: application/json\r\n" +
           extra_headers + "\r\n" + body;
  }
};

TEST_F(HostileClientTest, AnUnauthenticatedPostIsRefusedFromItsHeaderBeforeItsBodyIsSent) {
  start_daemon(config_yaml(default_agents()));
  ASSERT_FALSE(HasFatalFailure());
  // Fifty clients announce 60 KB bodies and send none of them: each hears 401 at once.
  std::vector<std::unique_ptr<RawConnection>> clients;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(std::make_unique<RawConnection>(port()));
    ASSERT_TRUE(clients.back()->send_all(task_request("Content-Length: 60000\r\n", "")));
  }
  for (auto& c : clients) {
    EXPECT_THAT(c->read("\r\n\r\n"), StartsWith("HTTP/1.1 401")) << "without the body";
  }
}

TEST_F(HostileClientTest, ATransferEncodingOtherThanChunkedIsRefusedAndTheConnectionClosed) {
  start_daemon(config_yaml(default_agents()));
  ASSERT_FALSE(HasFatalFailure());
  const std::string auth = std::string("Authorization: Bearer ") + kToken + "\r\n";
  // Read as bodiless, these bodies would run as a second request (a smuggled GET here).
  const std::string smuggled = "GET /v1/agents HTTP/1.1\r\nHost: mend\r\n\r\n";
  for (const std::string te : {"identity", "gzip", "chunked, identity", "gzip, chunked"}) {
    RawConnection raw(port());
    ASSERT_TRUE(raw.send_all(task_request(auth + "Transfer-Encoding: " + te + "\r\n", smuggled)));
    const std::string answer = raw.read("", 3s);
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 400")) << te;
    EXPECT_THAT(answer, HasSubstr("unsupported Transfer-Encoding")) << te;
    EXPECT_EQ(answer.find("HTTP/1.1 200"), std::string::npos) << "no second answer: " << te;
    EXPECT_TRUE(raw.peer_closed()) << te;
  }
  // Chunked alone is HTTP/1.1's own framing and works.
  RawConnection raw(port());
  const std::string body = R"({"type":"code_review","agent":"reviewer"})";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  ASSERT_TRUE(raw.send_all(task_request(auth + "Transfer-Encoding: chunked\r\n",
                                        std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n")));
  EXPECT_THAT(raw.read("\r\n\r\n"), StartsWith("HTTP/1.1 202"));
}

TEST_F(HostileClientTest, HealthChecksAreAnsweredWhenEveryConnectionIsTaken) {
  start_daemon(config_yaml(default_agents())
                   .replace(0, std::string("server:\n").size(), "server:\n  max_connections: 8\n"));
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 8; ++i) {
    idle.push_back(std::make_unique<RawConnection>(port()));
    ASSERT_TRUE(idle.back()->connected());
  }
  // The idle ones hold every slot (they have sent nothing); give the server a moment to count
  // them by asking something that needs one, until it is refused.
  wait_until(
      [&] {
        RawConnection probe(port());
        probe.send_all("GET /v1/agents HTTP/1.1\r\nHost: mend\r\n\r\n");
        return probe.read("\r\n\r\n").rfind("HTTP/1.1 503", 0) == 0;
      },
      5s, "the server to refuse a ninth connection");
  for (const char* path : {"/healthz", "/readyz"}) {
    RawConnection health(port());
    ASSERT_TRUE(health.send_all(std::string("GET ") + path + " HTTP/1.1\r\nHost: mend\r\n\r\n"));
    EXPECT_THAT(health.read("\r\n\r\n"), StartsWith("HTTP/1.1 200")) << path;
  }
}

// One client holding idle connections up to its own limit leaves room for the others: a second
// client address is served, and the first one's next connection is refused from its header.
TEST_F(HostileClientTest, OneClientCannotTakeEveryConnection) {
  start_daemon(config_yaml(default_agents())
                   .replace(0, std::string("server:\n").size(),
                            "server:\n  max_connections: 16\n  max_connections_per_client: 4\n"));
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<RawConnection>(port(), "127.0.0.3"));
    ASSERT_TRUE(idle.back()->connected());
  }
  wait_until(
      [&] {
        RawConnection fifth(port(), "127.0.0.3");
        fifth.send_all("GET /v1/agents HTTP/1.1\r\nHost: mend\r\n\r\n");
        const std::string answer = fifth.read("}");
        return answer.rfind("HTTP/1.1 503", 0) == 0 &&
               answer.find("too many connections from this address (limit 4)") != std::string::npos;
      },
      5s, "the server to refuse the fifth connection of one address");
  RawConnection other(port(), "127.0.0.4");
  ASSERT_TRUE(other.connected());
  other.send_all("GET /v1/agents HTTP/1.1\r\nHost: mend\r\n\r\n");
  EXPECT_THAT(other.read("\r\n\r\n"), StartsWith("HTTP/1.1 200"));
  // Its health checks still pass (a probe from the same host as a greedy client).
  RawConnection health(port(), "127.0.0.3");
  health.send_all("GET /healthz HTTP/1.1\r\nHost: mend\r\n\r\n");
  EXPECT_THAT(health.read("\r\n\r\n"), StartsWith("HTTP/1.1 200"));
  // Closing them gives the address its connections back.
  idle.clear();
  wait_until(
      [&] {
        RawConnection again(port(), "127.0.0.3");
        again.send_all("GET /v1/agents HTTP/1.1\r\nHost: mend\r\n\r\n");
        return again.read("\r\n\r\n").rfind("HTTP/1.1 200", 0) == 0;
      },
      5s, "the address to be served again");
}

TEST_F(HostileClientTest, NamesThatWouldForgeALogLineOrAUrlAreRefusedAndBearerIsCaseInsensitive) {
  start_daemon(config_yaml(default_agents()));
  ASSERT_FALSE(HasFatalFailure());
  json task = {{"type", "code_review"}, {"agent", "reviewer"}};
  task["id"] = "a/b";
  EXPECT_EQ(post("/v1/tasks", task).status, 400);
  task["id"] = std::string(129, 'x');
  EXPECT_EQ(post("/v1/tasks", task).status, 400);
  task.erase("id");
  EXPECT_EQ(post("/v1/tasks", task, true, {{"Idempotency-Key", "key\twith tab"}}).status, 400);
  EXPECT_EQ(post("/v1/tasks", task, true, {{"Idempotency-Key", std::string(257, 'k')}}).status,
            400);
  Reply lower = call("POST", base_ + "/v1/tasks", task.dump(),
                     {{"Authorization", std::string("bearer ") + kToken}});
  EXPECT_EQ(lower.status, 202) << lower.text;

  // A record to acknowledge: a critical failure opens an incident.
  chaos("reviewer", {{"fail_next", {{{"kind", "critical"}}}}});
  Reply failed = submit("reviewer");
  ASSERT_EQ(failed.status, 200) << failed.text;
  const std::int64_t record = failed.body["outcome"]["escalation"]["record_id"].get<std::int64_t>();
  const std::string path = "/v1/escalations/" + std::to_string(record) + "/acknowledge";
  Reply forged = post(path, {{"by", "alice\n2026-12-07T03:00:00 info  INC-1 resolved by boss"}});
  EXPECT_EQ(forged.status, 400) << forged.text;
  EXPECT_THAT(forged.text, HasSubstr("without control characters"));
  EXPECT_EQ(post(path, {{"by", std::string(201, 'a')}}).status, 400);
  EXPECT_EQ(post(path, {{"by", "alice"}}).status, 200);
  EXPECT_EQ(log().find("resolved by boss"), std::string::npos);
}

// About 3 s: 1,200 tasks of 60 KB each through a sample agent. Retained, their requests would
// hold 72 MB; a finished task keeps a summary, so the daemon's memory stays flat after warm-up.
TEST_F(HostileClientTest, RetainedTasksKeepASummaryNotTheirRequest) {
  if (!kRssMeansMendsMemory) GTEST_SKIP() << "RSS under a sanitizer is not mend's memory";
  start_daemon(config_yaml(agent_yaml("reviewer")));
  ASSERT_FALSE(HasFatalFailure());
  const json task = {{"type", "ai_analysis"},
                     {"agent", "reviewer"},
                     {"payload", {{"text", std::string(60000, 'w')}}}};
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Reply r = post("/v1/tasks?wait=10", task);
      ASSERT_EQ(r.status, 200) << r.text;
    }
  };
  run(200);  // warm-up: pools, caches, allocator arenas
  ASSERT_FALSE(HasFatalFailure());
  const std::size_t before = rss_bytes(daemon_->pid());
  run(1000);
  ASSERT_FALSE(HasFatalFailure());
  const std::size_t after = rss_bytes(daemon_->pid());
  const double per_task = (static_cast<double>(after) - static_cast<double>(before)) / 1000;
  std::cout << "[ memory ] per retained task: " << per_task << " bytes (RSS " << before << " -> "
            << after << ")\n";
  EXPECT_LT(per_task, 8192) << "a retained task holds its 60 KB request";
}

TEST_F(HostileClientTest, AnIdleConnectionCostsAFewKilobytes) {
  if (!kRssMeansMendsMemory) GTEST_SKIP() << "RSS under a sanitizer is not mend's memory";
  start_daemon(config_yaml(default_agents()));
  ASSERT_FALSE(HasFatalFailure());
  const std::size_t before = rss_bytes(daemon_->pid());
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 200; ++i) {
    idle.push_back(std::make_unique<RawConnection>(port()));
    // Half a request: the server holds its buffers for it until read_timeout.
    ASSERT_TRUE(idle.back()->send_all("POST /v1/tasks HTTP/1.1\r\nHost: mend\r\n"));
  }
  // Every one has been taken in once the server answers the next request.
  EXPECT_EQ(get("/healthz").status, 200);
  const std::size_t after = rss_bytes(daemon_->pid());
  const double per_connection = (static_cast<double>(after) - static_cast<double>(before)) / 200;
  std::cout << "[ memory ] per idle connection: " << per_connection << " bytes\n";
  EXPECT_LT(per_connection, 64 * 1024);
}

}  // namespace
}  // namespace mend::testing
