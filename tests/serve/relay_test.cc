// The relay (`relays:` in the configuration, docs/relay.md): `mend serve` as its own process in
// front of supervised sample agents, reached over real loopback sockets. What passes through
// unchanged, what mend's policies do in between (retry, breaker, fallback, degraded answer), and
// what bad input gets.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "serve_fixture.h"

namespace mend::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RelayTest : public ServeTest {
 protected:
  // mend with the default agents (reviewer, backup, generalist) and a relay to the reviewer.
  void start_with_relay(const std::string& agents, const std::string& extra = "",
                        const std::string& relay_keys = "") {
    start_daemon(
        config_yaml(agents, extra + "relays:\n  - {agent: reviewer, port: 0" + relay_keys + "}\n"));
    if (HasFatalFailure()) return;
    const std::string text = log();
    const std::string marker = "relay for reviewer on ";
    const std::size_t at = text.find(marker);
    ASSERT_NE(at, std::string::npos) << text;
    relay_ = text.substr(at + marker.size(), text.find('\n', at) - at - marker.size());
    port_ = static_cast<unsigned short>(std::stoi(relay_.substr(relay_.rfind(':') + 1)));
  }

  Reply task(const std::string& content = "int main() {}\n") {
    return call("POST", relay_ + "/task",
                json({{"id", "t-1"},
                      {"type", "code_review"},
                      {"attempt", 0},
                      {"payload", {{"content", content}}}})
                    .dump());
  }

  // A blocking TCP connection to the relay whose reads give up after 10 s; -1 (and a test
  // failure) when it cannot connect.
  int connect_to_relay() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port_);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ADD_FAILURE() << "cannot connect to the relay on port " << port_;
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // Sends `bytes` on a fresh connection, closes its sending half (the relay sees the client's
  // end), and reads until the relay closes (at most 10 s).
  std::string raw(const std::string& bytes) {
    const int fd = connect_to_relay();
    if (fd < 0) return "";
    EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    ::shutdown(fd, SHUT_WR);
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) out.append(buffer, n);
    ::close(fd);
    return out;
  }

  // The relay's counters reach /metrics within 200 ms.
  void wait_for_metric(const std::string& line) {
    wait_until([&] { return metrics().find(line) != std::string::npos; }, 5s, line);
  }

  std::string relay_;
  unsigned short port_ = 0;
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

TEST_F(RelayTest, PassesRequestsAndAnswersThroughAsTheyAre) {
  start_with_relay(default_agents());
  ASSERT_FALSE(HasFatalFailure());
  Reply r = task();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["agent"], "reviewer") << r.text;  // the agent's own answer
  EXPECT_EQ(r.header("Mend-Outcome"), "");           // one plain call: nothing added
  // Any path and method pass, not only the agent protocol's.
  Reply health = call("GET", relay_ + "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body["status"], "healthy") << health.text;
  // Pipelined requests on one connection: answered in order, the last one closes.
  const std::string body = R"({"id":"t-2","type":"code_review","attempt":0,"payload":{}})";
  const std::string request =
      "POST /task HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  const std::string answers =
      raw(request + request + "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(count(answers, "HTTP/1.1 200 OK"), 3u) << answers;
  EXPECT_EQ(count(answers, "\"agent\":\"reviewer\""), 2u) << answers;
  ASSERT_NE(answers.find("healthy"), std::string::npos) << answers;
  EXPECT_LT(answers.rfind("\"agent\":\"reviewer\""), answers.find("healthy")) << answers;
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"], 3);
  wait_for_metric("mend_relay_requests_total{relay=\"reviewer\",outcome=\"succeeded\"} 5");
  EXPECT_THAT(metrics(), HasSubstr("mend_attempts_total{agent=\"reviewer\",result=\"success\"} 5"));
}

// A client that sends Expect: 100-continue holds its body until told to go on.
TEST_F(RelayTest, AClientThatExpects100ContinueIsToldToGoOn) {
  start_with_relay(default_agents());
  ASSERT_FALSE(HasFatalFailure());
  const std::string body = R"({"id":"t-3","type":"code_review","attempt":0,"payload":{}})";
  const int fd = connect_to_relay();
  ASSERT_GE(fd, 0);
  const std::string header =
      "POST /task HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Connection: close\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  ASSERT_EQ(::send(fd, header.data(), header.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(header.size()));
  char buffer[4096];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
  ASSERT_GT(n, 0) << "no 100 Continue within 10 s";
  EXPECT_EQ(std::string(buffer, static_cast<std::size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_EQ(::send(fd, body.data(), body.size(), MSG_NOSIGNAL), static_cast<ssize_t>(body.size()));
  std::string answer;
  for (ssize_t m; (m = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, m);
  ::close(fd);
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(answer, HasSubstr("\"agent\":\"reviewer\""));
}

TEST_F(RelayTest, A503IsRetriedWithTheAgentsBackoffAndTheAnswerSaysSo) {
  start_with_relay(default_agents());
  ASSERT_FALSE(HasFatalFailure());
  chaos("reviewer", {{"fail_next", {{{"kind", "503"}, {"count", 2}}}}});
  Reply r = task();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.header("Mend-Outcome"), "succeeded_after_retry");
  EXPECT_EQ(r.body["agent"], "reviewer");
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"], 3);
  wait_for_metric(
      "mend_relay_requests_total{relay=\"reviewer\",outcome=\"succeeded_after_retry\"} 1");
  EXPECT_THAT(metrics(), HasSubstr("mend_retries_total{agent=\"reviewer\"} 2"));
  EXPECT_EQ(agent("reviewer")["counters"]["retries"], 2) << agent("reviewer").dump();
  EXPECT_EQ(agent("reviewer")["counters"]["calls"], 3) << agent("reviewer").dump();
}

// A retry waiting out its backoff is not sent to an agent that its probes marked unhealthy
// meanwhile: the request goes on along the chain. The reviewer is a server in this test whose
// /health the test turns unhealthy and which has no admin hooks, so that self-healing cannot
// make it healthy again before the retry.
TEST_F(RelayTest, ARetryIsNotSentToAnAgentMarkedUnhealthyDuringItsBackoff) {
  std::atomic<bool> healthy{true};
  std::atomic<int> calls{0};
  HttpServer reviewer(HttpServerOptions{}, [&](const HttpRequest& r) {
    if (r.target == "/health") {
      return healthy ? HttpResponse{200, {}, R"({"status":"healthy"})"}
                     : HttpResponse{503, {}, R"({"status":"unhealthy"})"};
    }
    if (r.target != "/task") return HttpResponse{404, {}, "{}"};
    return ++calls == 1 ? HttpResponse{503, {}, R"({"error":{"type":"temporary_unavailable"}})"}
                        : HttpResponse{200, {}, R"({"result":"from the reviewer"})"};
  });
  ASSERT_TRUE(reviewer.start().ok());
  start_with_relay("  - name: reviewer\n    url: " + reviewer.base_url() +
                       "\n    capabilities: [code_review]\n"
                       "    probes: {readiness: {period: 100ms, failure_threshold: 1}}\n"
                       "    policies: {retry: {max_retries: 3, backoff: {base: 1s, cap: 1s}}}\n" +
                       agent_yaml("backup"),
                   "fallback_chains: {reviewer: [backup]}\n");
  ASSERT_FALSE(HasFatalFailure());
  std::future<Reply> answer = std::async(std::launch::async, [&] { return task(); });
  wait_until([&] { return calls.load() == 1; }, 5s, "the first call to reach the reviewer");
  healthy = false;  // its next probe (within 100 ms) marks it unhealthy; the retry is due in 1 s
  Reply r = answer.get();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.header("Mend-Agent"), "backup") << log();
  EXPECT_EQ(r.header("Mend-Outcome"), "fallback");
  EXPECT_EQ(calls.load(), 1) << "the retry went to the unhealthy reviewer all the same";
  reviewer.stop();
}

TEST_F(RelayTest, AFailingAgentFallsBackAlongItsChainAndThenDegrades) {
  start_with_relay(default_agents(), "fallback_chains: {reviewer: [backup]}\n");
  ASSERT_FALSE(HasFatalFailure());
  // A logic error (500) is not retried: the next agent of the chain gets the request.
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  Reply r = task();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.header("Mend-Outcome"), "fallback");
  EXPECT_EQ(r.header("Mend-Agent"), "backup");
  EXPECT_EQ(r.body["agent"], "backup");
  // Every agent that could take it fails: the degraded answer for the request's task type.
  chaos("backup", {{"fail", {{"500", 1.0}}}});
  chaos("generalist", {{"fail", {{"500", 1.0}}}});
  r = task("line one\nline two\n");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.header("Mend-Outcome"), "degraded");
  EXPECT_EQ(r.body["status"], "degraded") << r.text;
  EXPECT_EQ(r.body["task_type"], "code_review") << r.text;
  EXPECT_EQ(r.body["basic_checks"]["line_count"], 2) << r.text;
  wait_for_metric("mend_relay_requests_total{relay=\"reviewer\",outcome=\"degraded\"} 1");
  wait_for_metric("mend_relay_requests_total{relay=\"reviewer\",outcome=\"fallback\"} 1");
}

TEST_F(RelayTest, FiveFailuresOpenTheCircuitAndTheRelayStopsCallingTheAgent) {
  // Open for a minute: no half-open probe may reach the reviewer during the test.
  start_with_relay(agent_yaml("reviewer", "    policies: {breaker: {recovery_timeout: 60s}}\n") +
                       agent_yaml("backup") + agent_yaml("generalist", "    generalist: true\n"),
                   "fallback_chains: {reviewer: [backup]}\n");
  ASSERT_FALSE(HasFatalFailure());
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  for (int i = 0; i < 5; ++i) {
    Reply r = task();
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.header("Mend-Agent"), "backup");
  }
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "open");
  for (int i = 0; i < 3; ++i) {
    Reply r = task();
    EXPECT_EQ(r.header("Mend-Agent"), "backup");
  }
  // The open circuit kept the last three away from the reviewer.
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"], 5);
  EXPECT_EQ(agent_stats("backup")["tasks_received"], 8);
}

// --- Replicas (issue 17): two real HTTP servers as one agent's replicas ------------------------

// A replica the test serves: `answer` decides each POST /task's answer; /health answers fine
// while `healthy` says so.
class TestReplica {
 public:
  explicit TestReplica(std::function<HttpResponse()> answer, std::size_t threads = 1)
      : server_(HttpServerOptions{.threads = threads},
                [this, answer = std::move(answer)](const HttpRequest& r) {
                  if (r.target == "/health") {
                    return healthy.load() ? HttpResponse{200, {}, R"({"status":"healthy"})"}
                                          : HttpResponse{503, {}, R"({"status":"unhealthy"})"};
                  }
                  if (r.target != "/task") return HttpResponse{404, {}, "{}"};
                  ++calls;
                  return answer();
                }) {}
  bool start() { return server_.start().ok(); }
  std::string url() const { return server_.base_url(); }
  ~TestReplica() { server_.stop(); }
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{true};

 private:
  HttpServer server_;
};

HttpResponse answer_ok() {
  return HttpResponse{200, {}, R"({"result":"done"})"};
}
HttpResponse answer_503() {
  return HttpResponse{503, {}, R"({"error":{"type":"temporary_unavailable"}})"};
}

class RelayReplicasTest : public RelayTest {
 protected:
  // The reviewer as the two test replicas, quick retries, the default retry budget.
  void start_two(TestReplica& a, TestReplica& b) {
    ASSERT_TRUE(a.start());
    ASSERT_TRUE(b.start());
    start_urls({a.url(), b.url()});
  }
  // The reviewer at these URLs (its replicas), quick retries, the default retry budget.
  // `more`: more of the agent's keys (YAML lines); `policies`: more of its policies (", key: ...").
  void start_urls(const std::vector<std::string>& urls, const std::string& more = "",
                  const std::string& policies = "") {
    std::string list;
    for (const std::string& url : urls) list += (list.empty() ? "\"" : ", \"") + url + "\"";
    start_with_relay("  - name: reviewer\n    urls: [" + list +
                     "]\n    capabilities: [code_review]\n"
                     "    policies: {retry: {max_retries: 3, backoff: {base: 10ms, cap: 10ms}},\n"
                     "               retry_budget: {}" +
                     policies + "}\n" + more + agent_yaml("backup"));
  }
  json balancer(int replica) { return agent("reviewer")["replicas"][replica]["balancer"]; }
};

TEST_F(RelayReplicasTest, TwoHealthyReplicasShareTheRequests) {
  TestReplica a(answer_ok);
  TestReplica b(answer_ok);
  start_two(a, b);
  ASSERT_FALSE(HasFatalFailure());
  for (int i = 0; i < 20; ++i) ASSERT_EQ(task().status, 200);
  // Requests one after another: none outstanding, so they alternate.
  EXPECT_EQ(a.calls.load(), 10);
  EXPECT_EQ(b.calls.load(), 10);
  EXPECT_EQ(balancer(0)["calls"], 10) << agent("reviewer").dump();
}

TEST_F(RelayReplicasTest, AReplicaItsReadinessProbeTookOutTakesNoCall) {
  TestReplica failing_probe(answer_ok);  // it still answers tasks: traffic alone would keep it in
  TestReplica fine(answer_ok);
  ASSERT_TRUE(failing_probe.start());
  ASSERT_TRUE(fine.start());
  start_urls({failing_probe.url(), fine.url()},
             "    probes: {readiness: {period: 100ms, failure_threshold: 1}}\n");
  ASSERT_FALSE(HasFatalFailure());
  failing_probe.healthy = false;
  wait_until([&] { return !agent("reviewer")["replicas"][0]["ready"].get<bool>(); }, 5s,
             "the readiness probe takes replica 0 out");
  const int before = failing_probe.calls.load();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(task().status, 200);
  EXPECT_EQ(failing_probe.calls.load(), before) << agent("reviewer").dump();
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "closed");
  // Ready again: back in the rotation.
  failing_probe.healthy = true;
  wait_until([&] { return agent("reviewer")["replicas"][0]["ready"].get<bool>(); }, 5s,
             "replica 0 ready again");
  for (int i = 0; i < 20; ++i) ASSERT_EQ(task().status, 200);
  EXPECT_GE(failing_probe.calls.load(), before + 5) << agent("reviewer").dump();
}

TEST_F(RelayReplicasTest, AReplicaAnswering503ToEverythingIsEjectedAndEveryRequestAnswered) {
  TestReplica dead(answer_503);
  TestReplica live(answer_ok);
  start_two(dead, live);
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kRequests = 60;
  for (int i = 0; i < kRequests; ++i) {
    Reply r = task();
    ASSERT_EQ(r.status, 200) << r.text;
    // Answered by the reviewer: at once, or by its retry on the other replica.
    EXPECT_NE(r.header("Mend-Outcome"), "degraded") << i;
    EXPECT_EQ(r.header("Mend-Agent"), "") << i;
  }
  EXPECT_EQ(live.calls.load(), kRequests);
  // Five failures in a row eject it (the retry after each went to the other replica).
  EXPECT_EQ(dead.calls.load(), 5);
  EXPECT_TRUE(balancer(0)["ejected"].get<bool>()) << agent("reviewer").dump();
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "closed");
  const double amplification =
      static_cast<double>(dead.calls.load() + live.calls.load()) / kRequests;
  EXPECT_LE(amplification, 1.1);
  // The budget's window: every request answered (effective), 60 of 65 calls (actual).
  const std::string text = metrics();
  EXPECT_THAT(text, HasSubstr("mend_agent_effective_success_ratio{agent=\"reviewer\"} 1\n"));
  const std::string actual = "mend_agent_actual_success_ratio{agent=\"reviewer\"} ";
  const std::size_t at = text.find(actual);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_NEAR(std::stod(text.substr(at + actual.size())), 60.0 / 65, 0.001);
}

TEST_F(RelayReplicasTest, AReplicaFarSlowerThanTheOtherIsEjected) {
  TestReplica slow([] {
    std::this_thread::sleep_for(300ms);  // the replica's behaviour, not the test's timing
    return answer_ok();
  });
  TestReplica fast(answer_ok);
  start_two(slow, fast);
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kRequests = 30;
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(task().status, 200);
  // Alternating while neither is ejected: five slow answers in a row (each > 100 ms and 5x the
  // fast replica's average) eject it; the rest go to the fast one. Its first answer has nothing
  // to compare with when it comes before the fast replica's first.
  EXPECT_LE(slow.calls.load(), 6);
  EXPECT_GE(balancer(0)["slow_calls"].get<int>(), 5) << agent("reviewer").dump();
  EXPECT_TRUE(balancer(0)["ejected"].get<bool>()) << agent("reviewer").dump();
  EXPECT_EQ(balancer(0)["failures"], 0);
}

// --- Hedging (issue 17, item 4): a second call to the other replica when the first is slow --

// A replica on a raw socket that answers POST /task after `delay` (with `status`), and tells
// whether the relay closed the connection first (a hedge that won cancels the other call);
// GET /health at once.
class SlowReplica {
 public:
  explicit SlowReplica(std::chrono::milliseconds delay, int status = 200)
      : delay_(delay), status_(status) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 64) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "cannot listen";
      return;
    }
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        std::lock_guard lock(mu_);
        if (stopping_) {
          ::close(fd);
          return;
        }
        fds_.push_back(fd);
        connections_.emplace_back([this, fd] { serve(fd); });
      }
    });
  }
  ~SlowReplica() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    if (acceptor_.joinable()) acceptor_.join();
    for (auto& t : connections_) t.join();
    for (int fd : fds_) ::close(fd);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::atomic<int> calls{0};
  std::atomic<int> closed_before_answer{0};  // by the relay: the call was cancelled
  std::atomic<int> answered{0};

 private:
  void serve(int fd) {
    std::string in;
    char buffer[4096];
    for (;;) {
      // One request: its head, then Content-Length bytes of body.
      std::size_t head_end;
      while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) return;
        in.append(buffer, static_cast<std::size_t>(n));
      }
      std::size_t length = 0;
      if (const std::size_t at = in.find("Content-Length: ");
          at != std::string::npos && at < head_end) {
        length = std::stoul(in.substr(at + 16));
      }
      while (in.size() < head_end + 4 + length) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) return;
        in.append(buffer, static_cast<std::size_t>(n));
      }
      const bool task = in.rfind("POST /task", 0) == 0;
      in.erase(0, head_end + 4 + length);
      std::string body = R"({"status":"healthy"})";
      std::string status_line = "HTTP/1.1 200 OK";
      if (task) {
        ++calls;
        body = R"({"result":"slow"})";
        if (status_ != 200) {
          status_line = "HTTP/1.1 " + std::to_string(status_) + " Failed";
          body = R"({"error":{"type":"temporary_unavailable"}})";
        }
        // Waits out the delay unless the relay closes the connection first.
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(delay_.count())) > 0) {
          const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_PEEK);
          if (n <= 0) {
            ++closed_before_answer;
            return;
          }
        }
        ++answered;
      }
      const std::string answer = status_line +
                                 "\r\nContent-Type: application/json\r\n"
                                 "Content-Length: " +
                                 std::to_string(body.size()) + "\r\n\r\n" + body;
      if (::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  std::chrono::milliseconds delay_;
  int status_;
  int listener_ = -1;
  unsigned short port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  bool stopping_ = false;
  std::vector<int> fds_;
  std::vector<std::thread> connections_;
};

// One replica, 30 % of its answers 503 (three calls in every ten, never four in a row): the
// budget lets every retry go (a gray failure), so every request gets the agent's answer, at about
// 1.43 calls a request. Before, gRPC's token bucket stopped retrying at about 9 % of failures.
TEST_F(RelayReplicasTest, ThirtyPercent503sOnOneReplicaAreRetriedIntoRealAnswers) {
  std::atomic<int> n{0};
  TestReplica flaky([&] {
    const int call = n++;
    return call % 10 == 0 || call % 10 == 3 || call % 10 == 6 ? answer_503() : answer_ok();
  });
  ASSERT_TRUE(flaky.start());
  start_urls({flaky.url()});
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kRequests = 100;
  int by_agent = 0;
  for (int i = 0; i < kRequests; ++i) {
    Reply r = task();
    ASSERT_EQ(r.status, 200) << r.text;
    by_agent += r.header("Mend-Outcome") != "degraded" && r.header("Mend-Agent").empty();
  }
  EXPECT_EQ(by_agent, kRequests);
  const double amplification = static_cast<double>(flaky.calls.load()) / kRequests;
  EXPECT_GT(amplification, 1.3);
  EXPECT_LT(amplification, 1.5);
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "closed");
}

// Overload: two replicas with room for one call at a time each (each call takes 5 ms; a call
// above that is answered 503 at once), offered eight at a time. Most calls fail on both, so the
// budget charges each retry as overload (5) and lets few go: the agent is not retried into the
// ground, where three retries a request would send it up to four calls a request. About 1 s
// (320 requests, 8 at a time, against replicas that serve 400 a second together).
TEST_F(RelayReplicasTest, AnOverloadedAgentIsNotRetriedIntoTheGround) {
  std::atomic<int> served{0};
  // Room for one call at a time: a 503 at once above it.
  auto room_for_one = [&served](std::atomic<int>& in_flight) {
    if (in_flight.fetch_add(1) >= 1) {
      in_flight.fetch_sub(1);
      return answer_503();
    }
    std::this_thread::sleep_for(5ms);  // the replica's work, not the test's timing
    in_flight.fetch_sub(1);
    ++served;
    return answer_ok();
  };
  std::atomic<int> in_a{0};
  std::atomic<int> in_b{0};
  TestReplica a([&] { return room_for_one(in_a); }, /*threads=*/8);
  TestReplica b([&] { return room_for_one(in_b); }, /*threads=*/8);
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  // A breaker that stays closed: the budget, not the circuit, is what this shows.
  start_urls({a.url(), b.url()}, "", ", breaker: {failure_threshold: 1000000}");
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kClients = 8;
  constexpr int kEach = 40;
  std::atomic<int> by_agent{0};
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        Reply r = task();
        answered += r.status == 200;
        by_agent += r.status == 200 && r.header("Mend-Outcome") != "degraded" &&
                    r.header("Mend-Agent").empty();
      }
    });
  }
  for (std::thread& t : clients) t.join();
  constexpr int kRequests = kClients * kEach;
  // Every request has an answer (the agent's, its fallback's or a degraded one).
  EXPECT_EQ(answered.load(), kRequests);
  const int calls = a.calls.load() + b.calls.load();
  const double amplification = static_cast<double>(calls) / kRequests;
  EXPECT_LE(amplification, 1.6) << calls << " calls, " << served.load() << " served, "
                                << by_agent.load() << " answered by the agent";
  // The budget held retries back: some requests were not answered by the agent...
  EXPECT_LT(by_agent.load(), kRequests);
  // ...but the agent answered what it had room for.
  EXPECT_EQ(by_agent.load(), served.load());
  // About 30 here: the fallback answers the rest at once, so the clients come back sooner than
  // the replicas free up (goodput under a paced load is docs/benchmarks.md's overload row).
  EXPECT_GE(served.load(), kRequests / 16);
}

// Three replicas, the first failing one call in twenty: every request answered by the agent, and
// the retries go to the other replicas (amplification 1 + 1/20 of a third).
TEST_F(RelayReplicasTest, ThreeReplicasOneFailingFivePercentAnswerEveryRequest) {
  std::atomic<int> n{0};
  TestReplica flaky([&] { return n++ % 20 == 0 ? answer_503() : answer_ok(); });
  TestReplica b(answer_ok);
  TestReplica c(answer_ok);
  ASSERT_TRUE(flaky.start());
  ASSERT_TRUE(b.start());
  ASSERT_TRUE(c.start());
  start_urls({flaky.url(), b.url(), c.url()});
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kRequests = 150;
  for (int i = 0; i < kRequests; ++i) {
    Reply r = task();
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_NE(r.header("Mend-Outcome"), "degraded") << i;
  }
  const int calls = flaky.calls.load() + b.calls.load() + c.calls.load();
  EXPECT_LE(static_cast<double>(calls) / kRequests, 1.1);
  EXPECT_GE(b.calls.load(), kRequests / 5);  // spread, not failover
  EXPECT_GE(c.calls.load(), kRequests / 5);
  EXPECT_FALSE(balancer(0)["ejected"].get<bool>()) << "1 in 20 is not an outlier";
}

// A replica nobody listens on: its refusals eject it, and every request is answered by the other.
TEST_F(RelayReplicasTest, AReplicaThatRefusesConnectionsIsEjected) {
  unsigned short closed_port = 0;
  {
    HttpServer gone(HttpServerOptions{}, [](const HttpRequest&) { return answer_ok(); });
    ASSERT_TRUE(gone.start().ok());
    closed_port = static_cast<unsigned short>(
        std::stoi(gone.base_url().substr(gone.base_url().rfind(':') + 1)));
    gone.stop();
  }
  TestReplica live(answer_ok);
  ASSERT_TRUE(live.start());
  start_urls({"http://127.0.0.1:" + std::to_string(closed_port), live.url()});
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) {
    Reply r = task();
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.header("Mend-Agent"), "") << i;
    EXPECT_NE(r.header("Mend-Outcome"), "degraded") << i;
  }
  EXPECT_EQ(live.calls.load(), kRequests);
  EXPECT_TRUE(balancer(0)["ejected"].get<bool>()) << agent("reviewer").dump();
  EXPECT_LE(balancer(0)["calls"].get<int>(), 6);
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "closed");
}

class RelayHedgingTest : public RelayReplicasTest {
 protected:
  // The reviewer as a replica answering after 1 s (first in turn) and a fast one.
  void start_hedged(SlowReplica& slow, TestReplica& fast, const std::string& policies) {
    ASSERT_TRUE(fast.start());
    start_with_relay("  - name: reviewer\n    urls: [\"" + slow.url() + "\", \"" + fast.url() +
                     "\"]\n    capabilities: [code_review]\n    policies: " + policies + "\n" +
                     agent_yaml("backup"));
  }
  Reply task_of_type(const std::string& type) {
    return call(
        "POST", relay_ + "/task",
        json({{"id", "t-1"}, {"type", type}, {"attempt", 0}, {"payload", {{"a", "b"}}}}).dump());
  }
  static constexpr const char* kHedged =
      "{retry_budget: {}, hedging: {delay: 50ms, task_types: [code_review]}}";
};

TEST_F(RelayHedgingTest, ASlowFirstCallIsHedgedToTheOtherReplicaWhichAnswersFirst) {
  SlowReplica slow(1000ms);
  TestReplica fast(answer_ok);
  start_hedged(slow, fast, kHedged);
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kRequests = 10;
  int hedged = 0;
  for (int i = 0; i < kRequests; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Reply r = task();
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_THAT(r.text, HasSubstr("done")) << i;  // the fast replica's answer
    EXPECT_LT(took, 500ms) << i;                  // not the slow one's second
    if (r.header("Mend-Outcome") == "hedged") ++hedged;
  }
  // The slow replica is first in turn, and a cancelled call is no answer: requests went to it
  // first, and were hedged to the fast one after 50 ms. Each race it lost counted against it: five
  // in a row ejected it, and the rest went to the fast replica alone (no hedge needed).
  EXPECT_EQ(hedged, 5);
  EXPECT_EQ(slow.calls.load(), hedged);
  EXPECT_EQ(fast.calls.load(), kRequests);
  EXPECT_TRUE(balancer(0)["ejected"].get<bool>()) << agent("reviewer").dump();
  EXPECT_EQ(balancer(0)["failures"], 5) << agent("reviewer").dump();
  // Each slow call was cancelled: its connection closed before it answered.
  wait_until([&] { return slow.closed_before_answer.load() == hedged; }, 2s,
             "the slow calls closed");
  EXPECT_EQ(slow.answered.load(), 0);
  wait_for_metric("mend_relay_hedges_total{relay=\"reviewer\",result=\"won\"} " +
                  std::to_string(hedged));
  wait_for_metric("mend_relay_requests_total{relay=\"reviewer\",outcome=\"hedged\"} " +
                  std::to_string(hedged));
  // Nothing outstanding; the breaker heard answers only.
  EXPECT_EQ(balancer(0)["outstanding"], 0) << agent("reviewer").dump();
  EXPECT_EQ(balancer(1)["outstanding"], 0) << agent("reviewer").dump();
  EXPECT_EQ(agent("reviewer")["circuit"]["failure_count"], 0) << agent("reviewer").dump();
}

TEST_F(RelayHedgingTest, AFirstCallThatFailsWhileTheHedgeIsOutWaitsForTheHedge) {
  SlowReplica failing(200ms, 503);  // first in turn: fails after the hedge has gone out
  TestReplica late([] {
    std::this_thread::sleep_for(400ms);  // the replica's behaviour: answers after the failure
    return answer_ok();
  });
  start_hedged(failing, late, kHedged);
  ASSERT_FALSE(HasFatalFailure());
  Reply r = task();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_THAT(r.text, HasSubstr("done"));
  // The hedge's answer, not a retry's: the 503 did not send the request to the replica again.
  EXPECT_EQ(r.header("Mend-Outcome"), "hedged");
  EXPECT_EQ(failing.calls.load(), 1);
  EXPECT_EQ(late.calls.load(), 1);
  EXPECT_EQ(balancer(0)["failures"], 1) << agent("reviewer").dump();
  // The breaker heard the request's answer only.
  EXPECT_EQ(agent("reviewer")["circuit"]["failure_count"], 0) << agent("reviewer").dump();
  wait_for_metric("mend_relay_hedges_total{relay=\"reviewer\",result=\"won\"} 1");
}

TEST_F(RelayHedgingTest, BothCallsFailingTakeTheFailuresWayOnce) {
  SlowReplica first(100ms, 503);
  SlowReplica second(100ms, 503);
  start_with_relay("  - name: reviewer\n    urls: [\"" + first.url() + "\", \"" + second.url() +
                   "\"]\n    capabilities: [code_review]\n    policies: {retry: {max_retries: 0},"
                   " retry_budget: {}, hedging: {delay: 50ms, task_types: [code_review]}}\n" +
                   agent_yaml("backup"));
  ASSERT_FALSE(HasFatalFailure());
  Reply r = task();
  ASSERT_EQ(r.status, 200) << r.text;
  // No retry allowed: the next agent answered, once both calls had failed.
  EXPECT_EQ(r.header("Mend-Outcome"), "fallback");
  EXPECT_EQ(r.header("Mend-Agent"), "backup");
  EXPECT_EQ(first.calls.load(), 1);
  EXPECT_EQ(second.calls.load(), 1);
  // One failure for the breaker, one for each replica.
  EXPECT_EQ(agent("reviewer")["circuit"]["failure_count"], 1) << agent("reviewer").dump();
  EXPECT_EQ(balancer(0)["failures"], 1) << agent("reviewer").dump();
  EXPECT_EQ(balancer(1)["failures"], 1) << agent("reviewer").dump();
  wait_for_metric("mend_relay_hedges_total{relay=\"reviewer\",result=\"failed\"} 1");
}

TEST_F(RelayHedgingTest, WithThePercentileDelayHedgesComeSoonerOnceTheLatencyIsKnown) {
  SlowReplica slow(1000ms);
  TestReplica fast(answer_ok);
  // Until 5 answers are known the delay is max_delay (200 ms); then the p95 of the answers (the
  // fast replica's, about a millisecond), at least min_delay (10 ms). No ejection: every request
  // goes to the slow replica first.
  start_hedged(slow, fast,
               "{retry_budget: {}, hedging: {delay: p95, min_delay: 10ms, max_delay: 200ms,"
               " min_samples: 5, task_types: [code_review]},"
               " replica_balancing: {consecutive_failures: 0, failure_rate_minimum_calls: 0}}");
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::chrono::steady_clock::duration> took;
  for (int i = 0; i < 12; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Reply r = task();
    took.push_back(std::chrono::steady_clock::now() - start);
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.header("Mend-Outcome"), "hedged") << i;
  }
  for (int i = 0; i < 5; ++i) EXPECT_GE(took[i], 150ms) << i;   // hedged after max_delay
  for (int i = 6; i < 12; ++i) EXPECT_LT(took[i], 150ms) << i;  // after the observed p95
  EXPECT_EQ(slow.answered.load(), 0);
}

TEST_F(RelayHedgingTest, ATaskTypeNotListedIsNotHedged) {
  SlowReplica slow(1000ms);
  TestReplica fast(answer_ok);
  start_hedged(slow, fast, kHedged);
  ASSERT_FALSE(HasFatalFailure());
  // The first request goes to the slow replica (first in turn) and waits for it.
  const auto start = std::chrono::steady_clock::now();
  Reply r = task_of_type("deployment");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_THAT(r.text, HasSubstr("slow"));
  EXPECT_GE(took, 900ms);
  EXPECT_EQ(r.header("Mend-Outcome"), "");
  EXPECT_EQ(slow.answered.load(), 1);
  EXPECT_EQ(fast.calls.load(), 0);
  EXPECT_THAT(metrics(), Not(HasSubstr("mend_relay_hedges_total{")));
}

TEST_F(RelayHedgingTest, ARetryBudgetThatAllowsNoRetryAllowsNoHedge) {
  SlowReplica slow(1000ms);
  TestReplica fast(answer_ok);
  start_hedged(slow, fast,
               "{retry_budget: {ratio: 0, min_retries_per_second: 0},"
               " hedging: {delay: 50ms, task_types: [code_review]}}");
  ASSERT_FALSE(HasFatalFailure());
  const auto start = std::chrono::steady_clock::now();
  Reply r = task();
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_THAT(r.text, HasSubstr("slow"));
  EXPECT_GE(took, 900ms);
  EXPECT_EQ(fast.calls.load(), 0);
  wait_for_metric("mend_relay_hedges_total{relay=\"reviewer\",result=\"refused\"} 1");
}

TEST_F(RelayHedgingTest, WithoutHedgingTheSlowReplicaIsWaitedFor) {
  SlowReplica slow(1000ms);
  TestReplica fast(answer_ok);
  start_hedged(slow, fast, "{retry_budget: {}}");
  ASSERT_FALSE(HasFatalFailure());
  const auto start = std::chrono::steady_clock::now();
  Reply r = task();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 900ms);
  EXPECT_THAT(r.text, HasSubstr("slow"));
  EXPECT_EQ(fast.calls.load(), 0);
}

// The task API hedges with the same policies.hedging (issue 17, item 4): POST /v1/tasks whose
// first call goes to the slow replica (first in turn) is hedged to the fast one after 50 ms,
// answered from it, and the slow call's connection is closed (not left to run out its delay).
TEST_F(RelayHedgingTest, TheTaskApiHedgesASlowFirstCallToTheOtherReplica) {
  SlowReplica slow(3000ms);
  TestReplica fast(answer_ok);
  start_hedged(slow, fast, kHedged);
  ASSERT_FALSE(HasFatalFailure());
  const auto start = std::chrono::steady_clock::now();
  Reply r = submit("reviewer");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_LT(took, 1500ms) << r.text;  // well under the slow replica's 3 s
  const json& outcome = r.body["outcome"];
  EXPECT_EQ(outcome["status"], "succeeded") << r.text;
  EXPECT_EQ(outcome["answer"]["result"], "done") << r.text;  // the fast replica's answer
  ASSERT_EQ(outcome["attempts"].size(), 1u) << r.text;
  const json& attempt = outcome["attempts"][0];
  EXPECT_EQ(attempt["replica"], 0) << r.text;
  EXPECT_EQ(attempt["hedge_replica"], 1) << r.text;
  EXPECT_EQ(attempt["hedge_won"], true) << r.text;
  EXPECT_EQ(slow.calls.load(), 1);
  EXPECT_EQ(fast.calls.load(), 1);
  // The lost call was cancelled: its connection closed before it answered.
  wait_until([&] { return slow.closed_before_answer.load() == 1; }, 2s, "the slow call closed");
  EXPECT_EQ(slow.answered.load(), 0);
  wait_for_metric("mend_task_hedges_total{agent=\"reviewer\",outcome=\"won\"} 1");
  wait_for_metric("mend_attempts_total{agent=\"reviewer\",result=\"cancelled\"} 1");
  // Nothing outstanding; the slow replica heard a failed (slow) call, the breaker no failure.
  EXPECT_EQ(balancer(0)["outstanding"], 0) << agent("reviewer").dump();
  EXPECT_EQ(balancer(1)["outstanding"], 0) << agent("reviewer").dump();
  EXPECT_EQ(balancer(0)["failures"], 1) << agent("reviewer").dump();
  EXPECT_EQ(agent("reviewer")["circuit"]["failure_count"], 0) << agent("reviewer").dump();
}

TEST_F(RelayTest, AnAgentThatDoesNotAnswerIsCutOffAtItsCallTimeout) {
  start_with_relay(agent_yaml("reviewer",
                              "    policies: {call_timeout: 300ms, retry: "
                              "{max_retries: 1}}\n") +
                       agent_yaml("backup"),
                   "fallback_chains: {reviewer: [backup]}\n");
  ASSERT_FALSE(HasFatalFailure());
  chaos("reviewer", {{"hang", true}});
  const auto started = std::chrono::steady_clock::now();
  Reply r = task();
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.header("Mend-Agent"), "backup");
  // Two calls of 300 ms (the sweep closes them within 200 ms more) and one backoff.
  EXPECT_GE(took, 0.6);
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"], 2);
}

// The relay keeps connections to the agent open between calls. When the agent restarts, those
// are dead: the relay finds out before it sends on them, not by failing a client's call.
TEST_F(RelayTest, ConnectionsToARestartedAgentAreNotTakenForItsFailures) {
  start_with_relay(default_agents());
  ASSERT_FALSE(HasFatalFailure());
  // The test's client keeps its connection: one worker, which keeps one agent connection.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(task().status, 200);
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  wait_until_restarted("reviewer", old_pid);
  for (int i = 0; i < 4; ++i) {
    Reply r = task();
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.header("Mend-Outcome"), "") << "request " << i;
    EXPECT_EQ(r.body["agent"], "reviewer");
  }
  wait_until([&] { return agent("reviewer")["counters"]["calls"] == 8; }, 5s, "8 calls counted");
  EXPECT_EQ(agent("reviewer")["counters"]["failures"], 0);
}

TEST_F(RelayTest, BadRequestsGetClearAnswersAndTheRelayKeepsServing) {
  start_with_relay(default_agents());
  ASSERT_FALSE(HasFatalFailure());
  std::string answer = raw("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 400 Bad Request"));
  EXPECT_THAT(answer, HasSubstr("malformed HTTP request"));
  // Framings that proxies and agents may read differently (request smuggling): refused, never
  // passed on. Beast refuses the first and the last itself; the second is mend's own check (as
  // is a Transfer-Encoding that does not end in chunked, below).
  for (const char* framing : {"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                              "Content-Length: 4\r\nContent-Length: 4\r\n",
                              "Transfer-Encoding: gzip\r\nContent-Length: 4\r\n"}) {
    answer = raw(std::string("POST /task HTTP/1.1\r\nHost: x\r\n") + framing + "\r\n0\r\n\r\n");
    EXPECT_THAT(answer, HasSubstr("HTTP/1.1 400 Bad Request")) << framing;
  }
  // Only HTTP/1.0 and 1.1 pass.
  answer = raw("GET /health HTTP/2.0\r\nHost: x\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 400 Bad Request"));
  // Codings that do not end in chunked leave the body's end unknowable: refused too.
  answer = raw("POST /task HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 400 Bad Request"));
  answer = raw("POST /task HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 413"));
  EXPECT_THAT(answer, HasSubstr("server.max_body_bytes"));
  answer = raw("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 501"));
  answer = raw("GET /x HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 431"));
  // A client that goes away mid-request costs nothing.
  answer = raw("POST /task HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"id\":");
  EXPECT_EQ(answer, "");
  // None of it reached the agent, and the relay still serves.
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"], 0);
  Reply r = task();
  EXPECT_EQ(r.status, 200) << r.text;
  wait_for_metric("mend_relay_requests_total{relay=\"reviewer\",outcome=\"rejected\"} 9");
  EXPECT_THAT(log(), Not(HasSubstr("unexpected exception")));
}

// An agent reached by URL with a path: the relay puts the path before each target (as the task
// API does), and keeps its clients away from the agent's admin hooks unless told otherwise.
class RelayToAPathTest : public RelayTest {
 protected:
  RelayToAPathTest() {
    agent_ = std::make_unique<HttpServer>(HttpServerOptions{}, [this](const HttpRequest& r) {
      if (r.target.find("health") == std::string::npos) {
        std::lock_guard lock(mu_);
        targets_.push_back(r.target);
      }
      return HttpResponse{200, {{"Content-Type", "application/json"}}, R"({"status":"healthy"})"};
    });
    Result<void> started = agent_->start();
    if (!started.ok()) throw std::runtime_error(started.error().describe());
  }
  ~RelayToAPathTest() override { agent_->stop(); }
  std::string agents() const {
    return "  - name: reviewer\n    url: " + agent_->base_url() +
           "/agents/reviewer/\n    capabilities: [code_review]\n";
  }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

  std::unique_ptr<HttpServer> agent_;
  std::mutex mu_;
  std::vector<std::string> targets_;
};

TEST_F(RelayToAPathTest, TheBaseUrlsPathGoesBeforeEveryTargetAndAdminHooksAreRefused) {
  start_with_relay(agents());
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(call("GET", relay_ + "/task?x=1").status, 200);
  for (const std::string target : {"/admin/chaos", "/%61dmin/chaos", "//ADMIN/restart", "/admin",
                                   "/admin/chaos?u=http://x/y", "/admin/chaos?x=://"}) {
    const std::string answer =
        raw("POST " + target + " HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}");
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 403")) << target;
    EXPECT_THAT(answer, HasSubstr("pass_admin")) << target;
  }
  // Targets that could leave the base path, or slip past the check, in another reader's eyes.
  for (const std::string target : {"http://agent.test/admin/chaos", "/../b/admin/chaos",
                                   "/x/./admin", "/%2e%2e/admin", "/a%2Fb", "/a\\b", "*"}) {
    const std::string answer = raw("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 400")) << target;
  }
  EXPECT_EQ(targets(), std::vector<std::string>{"/agents/reviewer/task?x=1"})
      << "no admin request, nor any other refused one, reached the agent";
}

TEST_F(RelayToAPathTest, PassAdminLetsTheHooksThrough) {
  start_with_relay(agents(), "", ", pass_admin: true");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(call("POST", relay_ + "/admin/chaos", "{}").status, 200);
  EXPECT_EQ(targets(), std::vector<std::string>{"/agents/reviewer/admin/chaos"});
}

}  // namespace
}  // namespace mend::testing
