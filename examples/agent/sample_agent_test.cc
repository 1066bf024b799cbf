// Tests of mend-sample-agent as a black box: the binary runs as a child process on a free port,
// and the tests talk to it over loopback with mend's own HTTP client, reading its answers the
// way mend does (interpret_task_response, interpret_health_response, diagnose). Every wait is
// bounded; every child is killed at the end of its test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mend/core/recovery.h"
#include "mend/runtime/agent_client.h"
#include "mend/runtime/http_client.h"
#include "mend_test/paths.h"

extern char** environ;

namespace mend {
namespace {

namespace net = boost::asio;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// The agent binary as a child process, started with --port 0 and the given flags.
class AgentProcess {
 public:
  explicit AgentProcess(std::vector<std::string> flags) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    std::vector<std::string> args = {testing::kSampleAgentBinary, "--port", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    if (::posix_spawn(&pid_, testing::kSampleAgentBinary, &actions, nullptr, argv.data(),
                      environ) != 0)
      pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    stdout_ = out[0];
    if (pid_ > 0) read_listening_line();
  }
  ~AgentProcess() {
    if (pid_ > 0 && !exit_status_) {
      ::kill(pid_, SIGTERM);
      if (!wait_exit(seconds(5))) {
        ::kill(pid_, SIGKILL);
        wait_exit(seconds(5));
      }
    }
    if (stdout_ >= 0) ::close(stdout_);
  }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  // "http://127.0.0.1:PORT" once the agent said it listens; "" when it did not within 10 s.
  const std::string& base_url() const { return base_url_; }

  // The exit status once the process has exited (128 + signal when killed), within `limit`.
  std::optional<int> wait_exit(milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (!exit_status_) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else if (Clock::now() > deadline) {
        break;
      } else {
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    return exit_status_;
  }

 private:
  void read_listening_line() {
    std::string text;
    auto deadline = Clock::now() + seconds(10);
    while (text.find('\n') == std::string::npos) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      pollfd p{stdout_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return;
      char chunk[256];
      ssize_t n = ::read(stdout_, chunk, sizeof chunk);
      if (n <= 0) return;
      text.append(chunk, static_cast<std::size_t>(n));
    }
    const std::string prefix = "listening on ";
    if (text.rfind(prefix, 0) == 0) {
      base_url_ = text.substr(prefix.size(), text.find('\n') - prefix.size());
    }
  }

  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string base_url_;
  std::optional<int> exit_status_;
};

// An HTTP client on its own thread, with JSON helpers.
class Client {
 public:
  explicit Client(std::string base_url)
      : base_(std::move(base_url)),
        guard_(net::make_work_guard(io_)),
        thread_([this] { io_.run(); }) {
    http_ = std::make_unique<HttpClient>(io_.get_executor());
  }
  ~Client() {
    http_.reset();
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  Result<HttpResponse> get(const std::string& path, std::vector<HttpHeader> headers = {}) {
    return http_->request_sync("GET", base_ + path, std::move(headers), {}, seconds(5));
  }
  Result<HttpResponse> post(const std::string& path, std::string body,
                            Duration timeout = seconds(5)) {
    return http_->request_sync("POST", base_ + path, {{"Content-Type", "application/json"}},
                               std::move(body), timeout);
  }
  Result<HttpResponse> task(const std::string& id, const std::string& type = "code_review",
                            Duration timeout = seconds(5)) {
    json task = {{"id", id},
                 {"type", type},
                 {"attempt", 0},
                 {"payload", {{"content", "int main() {\n  return 0;\n}\n"}}}};
    return post("/task", task.dump(), timeout);
  }
  // The body of a 2xx/4xx/5xx answer as JSON; fails the test when there is no answer.
  json answer(const Result<HttpResponse>& r, int expected_status) {
    EXPECT_TRUE(r.ok()) << r.error().describe();
    if (!r.ok()) return {};
    EXPECT_EQ(r->status, expected_status) << r->body;
    return json::parse(r->body, nullptr, false);
  }
  void forget_connections() { http_->close_idle_connections(); }

 private:
  std::string base_;
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::thread thread_;
  std::unique_ptr<HttpClient> http_;
};

// What mend makes of the agent's answer to a task.
Error as_mend_reads_it(const Result<HttpResponse>& r) {
  if (!r.ok()) return r.error();
  Result<std::string> read = interpret_task_response(*r, "sample");
  if (read.ok()) return Error::of_kind("none", "the task succeeded");
  return read.error();
}

TEST(SampleAgent, AnswersATaskAndItsHealth) {
  AgentProcess agent({"--name", "reviewer"});
  ASSERT_NE(agent.base_url(), "") << "the agent did not say where it listens";
  EXPECT_EQ(agent.base_url().rfind("http://127.0.0.1:", 0), 0u) << agent.base_url();
  Client client(agent.base_url());

  json done = client.answer(client.task("task-1"), 200);
  EXPECT_EQ(done["agent"], "reviewer");
  EXPECT_EQ(done["task_id"], "task-1");
  EXPECT_EQ(done["type"], "code_review");
  EXPECT_EQ(done["result"]["lines"], 3);
  EXPECT_EQ(done["result"]["review"], "looks fine");
  json deployed = client.answer(client.task("task-2", "deployment"), 200);
  EXPECT_EQ(deployed["result"]["status"], "deployed");

  auto health = client.get("/health");
  json h = client.answer(health, 200);
  EXPECT_EQ(h["status"], "healthy");
  EXPECT_EQ(h["metrics"]["memory_percent"], 0.0);
  EXPECT_EQ(h["metrics"]["pool_size"], 16);
  ProbeResult probe = interpret_health_response(*health);
  EXPECT_TRUE(probe.answered);
  EXPECT_EQ(probe.reported, HealthState::healthy);

  json bad = client.answer(client.post("/task", "{\"id\": 1}"), 400);
  EXPECT_EQ(bad["error"]["type"], "validation_failed");
  client.answer(client.post("/task", "not json"), 400);
  client.answer(client.get("/nowhere"), 404);
  client.answer(client.get("/task"), 405);

  json stats = client.answer(client.get("/stats"), 200);
  EXPECT_EQ(stats["agent"], "reviewer");
  EXPECT_EQ(stats["counters"]["tasks_received"], 2);
  EXPECT_EQ(stats["counters"]["tasks_succeeded"], 2);
}

TEST(SampleAgent, FailNextFailsExactlyThatManyTasks) {
  AgentProcess agent({});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  json knobs = client.answer(
      client.post("/admin/chaos", R"({"fail_next": [{"kind": "503", "count": 2}]})"), 200);
  EXPECT_EQ(knobs["knobs"]["fail_next"], json::parse(R"([{"kind": "503", "count": 2}])"));

  for (int i = 0; i < 2; ++i) {
    auto r = client.task("t" + std::to_string(i));
    json failed = client.answer(r, 503);
    EXPECT_EQ(failed["error"]["type"], "temporary_unavailable");
    EXPECT_EQ(to_string(as_mend_reads_it(r).type), "temporary_unavailable");
  }
  client.answer(client.task("t2"), 200);

  json chaos = client.answer(client.get("/admin/chaos"), 200);
  EXPECT_EQ(chaos["knobs"]["fail_next"], json::array());
  EXPECT_EQ(chaos["counters"]["tasks_received"], 3);
  EXPECT_EQ(chaos["counters"]["tasks_answered"], 3);
  EXPECT_EQ(chaos["counters"]["tasks_succeeded"], 1);
  EXPECT_EQ(chaos["counters"]["failed"]["503"], 2);
}

TEST(SampleAgent, EachFailureKindIsReadByMendAsDocumented) {
  AgentProcess agent({"--retry-after", "2"});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  client.answer(client.post("/admin/chaos", R"({"fail_next": [{"kind": "429"}, {"kind": "500"},
      {"kind": "database"}, {"kind": "external"}, {"kind": "critical"}]})"),
                200);

  auto limited = client.task("a");
  ASSERT_TRUE(limited.ok()) << limited.error().describe();
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(limited->header("Retry-After"), "2");
  EXPECT_EQ(json::parse(limited->body)["error"]["retry_after"], 2.0);
  Error e = as_mend_reads_it(limited);
  EXPECT_EQ(to_string(e.type), "rate_limit_exceeded");
  ASSERT_TRUE(e.retry_after.has_value());
  EXPECT_EQ(*e.retry_after, seconds(2));

  struct Expected {
    int status;
    const char* type;
    const char* severity;
  };
  for (Expected x :
       {Expected{500, "processing_failed", "medium"}, Expected{500, "database_error", "high"},
        Expected{503, "external_service_down", "high"},
        Expected{500, "data_corruption", "critical"}}) {
    auto r = client.task(x.type);
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ(r->status, x.status) << x.type;
    Error read = as_mend_reads_it(r);
    EXPECT_EQ(to_string(read.type), x.type);
    EXPECT_EQ(to_string(read.severity), x.severity) << x.type;
  }
  client.answer(client.task("after"), 200);
}

TEST(SampleAgent, TheSameSeedGivesTheSameFailures) {
  auto statuses = [](std::vector<std::string> flags) {
    AgentProcess agent(std::move(flags));
    std::string seen;
    if (agent.base_url().empty()) return seen;
    Client client(agent.base_url());
    for (int i = 0; i < 20; ++i) {
      auto r = client.task("s" + std::to_string(i));
      seen += r.ok() ? std::to_string(r->status) + " " : "error ";
    }
    return seen;
  };
  std::string first = statuses({"--seed", "7", "--fail", "503=0.5"});
  EXPECT_EQ(statuses({"--seed", "7", "--fail", "503=0.5"}), first);
  EXPECT_NE(first.find("200"), std::string::npos) << first;
  EXPECT_NE(first.find("503"), std::string::npos) << first;
  EXPECT_EQ(first.find("error"), std::string::npos) << first;
}

TEST(SampleAgent, ResetAndTimeoutAreTransportErrors) {
  AgentProcess agent({});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  client.answer(client.post("/admin/chaos", R"({"fail_next": [{"kind": "reset"}],
                                                "timeout_delay_ms": 2000})"),
                200);
  client.forget_connections();  // else the client would retry the reset on a fresh connection
  auto reset = client.task("r");
  ASSERT_FALSE(reset.ok()) << reset->status;
  EXPECT_EQ(reset.error().kind, "connect") << reset.error().describe();

  client.answer(client.post("/admin/chaos", R"({"fail_next": [{"kind": "timeout"}]})"), 200);
  auto start = Clock::now();
  auto timed_out = client.task("t", "code_review", milliseconds(300));
  ASSERT_FALSE(timed_out.ok()) << timed_out->status;
  EXPECT_EQ(timed_out.error().kind, "timeout");
  EXPECT_LT(Clock::now() - start, seconds(2));

  client.answer(client.task("fine"), 200);
  json chaos = client.answer(client.get("/admin/chaos"), 200);
  EXPECT_EQ(chaos["counters"]["failed"]["reset"], 1);
  EXPECT_EQ(chaos["counters"]["failed"]["timeout"], 1);
}

TEST(SampleAgent, HangAndLatencyHoldAnswersWithoutHoldingTheAgent) {
  AgentProcess agent({"--hang"});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  auto hung = client.task("h", "code_review", milliseconds(300));
  ASSERT_FALSE(hung.ok());
  EXPECT_EQ(hung.error().kind, "timeout");
  // Health and admin still answer while tasks hang.
  client.answer(client.get("/health"), 200);
  json chaos =
      client.answer(client.post("/admin/chaos", R"({"hang": false, "latency_ms": 200})"), 200);
  EXPECT_EQ(chaos["counters"]["tasks_hung"], 1);
  auto start = Clock::now();
  client.answer(client.task("slow"), 200);
  EXPECT_GE(Clock::now() - start, milliseconds(190));
}

TEST(SampleAgent, CrashAfterOneTaskExitsWithStatus1) {
  AgentProcess agent({"--crash-after", "1"});
  ASSERT_NE(agent.base_url(), "");
  {
    Client client(agent.base_url());
    client.answer(client.get("/health"), 200);  // not a task: does not count
    client.answer(client.task("only"), 200);    // answered in full before the exit
  }
  EXPECT_EQ(agent.wait_exit(seconds(5)), std::optional<int>(1));
}

TEST(SampleAgent, MemoryGrowthShowsInHealthAndClearCachesFreesIt) {
  AgentProcess agent({"--memory-growth", "1024", "--memory-limit", "10"});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  for (int i = 0; i < 9; ++i) client.answer(client.task("m" + std::to_string(i)), 200);
  auto health = client.get("/health");
  json h = client.answer(health, 200);
  EXPECT_EQ(h["status"], "degraded");
  EXPECT_EQ(h["metrics"]["memory_percent"], 90.0);
  EXPECT_EQ(h["metrics"]["cache_bytes"], 9 << 20);
  // mend's diagnosis of this answer: high memory usage, whose first step is clear-caches.
  ProbeResult probe = interpret_health_response(*health);
  Symptoms symptoms;
  symptoms.health = probe.reported;
  symptoms.metrics = probe.metrics;
  EXPECT_EQ(diagnose(symptoms), std::optional<std::string>("high_memory_usage"));
  // Full: the next growth does not fit.
  client.answer(client.task("m9"), 200);
  json full = client.answer(client.task("m10"), 500);
  EXPECT_EQ(full["error"]["type"], "memory_exhausted");

  json cleared = client.answer(client.post("/admin/clear-caches", "{}"), 200);
  EXPECT_EQ(cleared["freed_bytes"], 10 << 20);
  json after = client.answer(client.get("/health"), 200);
  EXPECT_EQ(after["status"], "healthy");
  EXPECT_EQ(after["metrics"]["memory_percent"], 0.0);
}

TEST(SampleAgent, AdminHooksRepairWhatChaosBroke) {
  AgentProcess agent({"--pool-size", "4"});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());

  client.answer(client.post("/admin/chaos", R"({"database_down": true})"), 200);
  EXPECT_EQ(to_string(as_mend_reads_it(client.task("d")).type), "database_error");
  json down = client.answer(client.get("/health"), 503);
  EXPECT_EQ(down["status"], "unhealthy");
  EXPECT_EQ(down["metrics"]["database_connected"], 0);
  client.answer(client.post("/admin/reconnect-database", "{}"), 200);
  EXPECT_EQ(client.answer(client.get("/health"), 200)["status"], "healthy");
  client.answer(client.task("d2"), 200);

  client.answer(client.post("/admin/chaos", R"({"pool_exhausted": true})"), 200);
  auto full = client.get("/health");
  json pool = client.answer(full, 200);
  EXPECT_EQ(pool["status"], "degraded");
  EXPECT_EQ(pool["metrics"]["pool_in_use"], 4);
  Symptoms symptoms;
  symptoms.health = HealthState::degraded;
  symptoms.metrics = interpret_health_response(*full).metrics;
  EXPECT_EQ(diagnose(symptoms), std::optional<std::string>("connection_pool_exhausted"));
  EXPECT_EQ(to_string(as_mend_reads_it(client.task("p")).type), "connection_pool_exhausted");
  client.answer(client.post("/admin/reset-connections", "{}"), 200);
  EXPECT_EQ(client.answer(client.post("/admin/increase-limits", "{}"), 200)["pool_size"], 8);
  EXPECT_EQ(client.answer(client.get("/health"), 200)["status"], "healthy");

  // A hook set to fail, an unknown hook, and a restart that brings back the startup knobs.
  client.answer(client.post("/admin/chaos", R"({"admin_fail": {"restart": 500}, "hang": true})"),
                200);
  client.answer(client.post("/admin/restart", R"({"graceful": true})"), 500);
  client.answer(client.post("/admin/scale", "{}"), 404);
  client.answer(client.post("/admin/chaos", R"({"admin_fail": {}})"), 200);
  json restarted = client.answer(client.post("/admin/restart", R"({"graceful": false})"), 200);
  EXPECT_EQ(restarted["restarted"], true);
  json knobs = client.answer(client.get("/admin/chaos"), 200)["knobs"];
  EXPECT_EQ(knobs["hang"], false);
  client.answer(client.task("after-restart"), 200);
  json stats = client.answer(client.get("/stats"), 200);
  EXPECT_EQ(stats["pool_size"], 4);
  EXPECT_EQ(stats["admin_calls"]["restart"], 2);
}

TEST(SampleAgent, BadChaosSettingsAre400AndChangeNothing) {
  AgentProcess agent({"--fail", "503=0.25"});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  json before = client.answer(client.get("/admin/chaos"), 200)["knobs"];
  EXPECT_EQ(before["fail"], json::parse(R"({"503": 0.25})"));

  struct Case {
    const char* body;
    const char* says;
  };
  for (Case c : {Case{"not json", "not valid JSON"}, Case{"[1, 2]", "JSON object"},
                 Case{R"({"fail": {"bogus": 0.1}})", "'bogus' is not a failure kind"},
                 Case{R"({"fail": {"503": 2}})", "between 0 and 1"},
                 Case{R"({"latency_ms": "slow"})", "latency_ms must be a number"},
                 Case{R"({"hang": 1})", "hang must be true or false"},
                 Case{R"({"fail_next": [{"kind": "503", "count": 0}]})", "count"},
                 Case{R"({"latency_ms": 10, "nope": 1})", "unknown chaos knob 'nope'"}}) {
    json error = client.answer(client.post("/admin/chaos", c.body), 400);
    EXPECT_EQ(error["error"]["type"], "validation_failed") << c.body;
    EXPECT_NE(error["error"]["message"].get<std::string>().find(c.says), std::string::npos)
        << c.body << " -> " << error.dump();
  }
  EXPECT_EQ(client.answer(client.get("/admin/chaos"), 200)["knobs"], before);

  // A bad flag stops the agent at once with a clear message.
  AgentProcess bad_flag({"--fail", "503=lots"});
  EXPECT_EQ(bad_flag.base_url(), "");
  EXPECT_EQ(bad_flag.wait_exit(seconds(5)), std::optional<int>(2));
}

TEST(SampleAgent, ABearerTokenIsRequiredWhenSet) {
  AgentProcess agent({"--token", "s3cret"});
  ASSERT_NE(agent.base_url(), "");
  Client client(agent.base_url());
  json refused = client.answer(client.get("/health"), 401);
  EXPECT_EQ(refused["error"]["type"], "authentication_failed");
  client.answer(client.get("/health", {{"Authorization", "Bearer wrong"}}), 401);
  client.answer(client.get("/health", {{"Authorization", "Bearer s3cret"}}), 200);
}

}  // namespace
}  // namespace mend
