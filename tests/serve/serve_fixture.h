// Test support for the daemon's integration tests: `mend serve` started as its own process
// with a configuration the test writes, supervising real sample agents (mend-sample-agent), and
// talked to over loopback HTTP.
#ifndef MEND_TESTS_SERVE_SERVE_FIXTURE_H_
#define MEND_TESTS_SERVE_SERVE_FIXTURE_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mend/runtime/http_client.h"
#include "mend/runtime/http_server.h"
#include "mend_test/child_process.h"
#include "mend_test/io_loop.h"
#include "mend_test/paths.h"
#include "mend_test/temp_dir.h"

namespace mend::testing {

using nlohmann::json;
using namespace std::chrono_literals;

// The problems tests/serve/data/broken.yaml's header lists, in order, as check-config prints them
// after the file name ("line:column: key: message"), between two marker lines.
inline std::vector<std::string> expected_broken_problems(const std::string& file) {
  std::ifstream source(file);
  std::vector<std::string> expected;
  bool listing = false;
  for (std::string line; std::getline(source, line);) {
    if (line == "# Expected problems:") {
      listing = true;
    } else if (line == "# (end of expected problems)") {
      break;
    } else if (listing && line.rfind("#   ", 0) == 0) {
      expected.push_back(line.substr(4));
    }
  }
  return expected;
}

// Receives the daemon's webhook notifications and keeps them.
class WebhookSink {
 public:
  WebhookSink() {
    server_ = std::make_unique<HttpServer>(HttpServerOptions{}, [this](const HttpRequest& r) {
      std::lock_guard lock(mu_);
      received_.push_back(json::parse(r.body, nullptr, false));
      return HttpResponse{200, {}, "ok"};
    });
    Result<void> started = server_->start();
    if (!started.ok()) throw std::runtime_error(started.error().describe());
  }
  // The server goes first: its handler writes to received_.
  ~WebhookSink() { server_->stop(); }
  std::vector<json> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  std::string url() const { return server_->base_url() + "/webhook"; }

 private:
  std::unique_ptr<HttpServer> server_;
  mutable std::mutex mu_;
  std::vector<json> received_;
};

// A response as the tests read it.
struct Reply {
  int status = 0;
  json body;
  std::string text;
  std::vector<HttpHeader> headers;
  std::string header(std::string_view name) const { return find_header(headers, name); }
};

class ServeTest : public ::testing::Test {
 protected:
  static constexpr const char* kToken = "s3cret-token";

  // The agents every test starts with: reviewer (primary), backup (its chain), generalist.
  // `probes`: the lines under `probes:` (the default probes every 100-200 ms).
  std::string agent_yaml(const std::string& name, const std::string& extra = "",
                         const std::string& capability = "code_review",
                         const std::string& probes =
                             "      startup: {period: 100ms, failure_threshold: 100}\n"
                             "      readiness: {period: 200ms, failure_threshold: 3}\n"
                             "      liveness: {period: 200ms, failure_threshold: 3}\n") const {
    return "  - name: " + name + "\n    command: " + std::string(kSampleAgentBinary) +
           "\n    args: [--port, \"{port}\", --name, " + name + "]\n    capabilities: [" +
           capability +
           "]\n    stop_timeout: 2s\n"
           "    probes:\n" +
           probes + extra;
  }

  std::string config_yaml(const std::string& agents, const std::string& extra = "") const {
    return "server:\n  port: 0\n  token: " + std::string(kToken) +
           "\n  drain_timeout: 10s\n  max_body_bytes: 64KiB\n"
           "store:\n  path: mend.db\n"
           "policies:\n"
           "  retry: {max_retries: 3, backoff: {base: 50ms, cap: 2s}}\n"
           "  breaker: {failure_threshold: 5, recovery_timeout: 1s, success_threshold: 3}\n"
           "  call_timeout: 2s\n"
           "agents:\n" +
           agents +
           "escalation:\n"
           "  war_room_url_template: https://war-room.test/{id}\n"
           "  receivers:\n"
           "    - {name: hook, kind: webhook, url: \"" +
           webhook_.url() +
           "\"}\n"
           "  routes: {engineering: [hook], on-call: [hook], emergency: [hook]}\n"
           "  delivery_interval: 100ms\n"
           "  sla_check_interval: 1s\n"
           "supervision:\n"
           "  restart_backoff_initial: 100ms\n"
           "  restart_backoff_max: 1s\n" +
           extra;
  }

  std::string default_agents() const {
    return agent_yaml("reviewer") + agent_yaml("backup") +
           agent_yaml("generalist", "    generalist: true\n");
  }

  void write_config(const std::string& yaml) { std::ofstream(config_path()) << yaml; }
  std::string config_path() const { return dir_.file("mend.yaml"); }

  // Starts `mend serve` and waits until it listens.
  void start_daemon_without_waiting(const std::string& yaml) {
    write_config(yaml);
    std::vector<std::string> args = launcher_;
    for (std::string a :
         {std::string(kMendBinary), std::string("serve"), std::string("--config"), config_path()}) {
      args.push_back(std::move(a));
    }
    const std::string program = args.front();
    args.erase(args.begin());
    daemon_ = std::make_unique<ChildProcess>(program, args, dir_.file("mend.log"));
    std::optional<std::string> url = daemon_->wait_for_line("mend: listening on ", 20s);
    ASSERT_TRUE(url.has_value()) << "mend serve did not start; its log:\n" << log();
    base_ = *url;
  }

  // Starts `mend serve` and waits until every agent is ready.
  void start_daemon(const std::string& yaml) {
    start_daemon_without_waiting(yaml);
    if (::testing::Test::HasFatalFailure()) return;
    wait_until([&] { return get("/readyz").status == 200; }, 20s, "all agents ready");
  }

  std::string log() const {
    std::ifstream in(dir_.file("mend.log"));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  Reply call(const std::string& method, const std::string& url, const std::string& body = "",
             std::vector<HttpHeader> headers = {}, Duration timeout = 30s) {
    if (!body.empty()) headers.push_back({"Content-Type", "application/json"});
    Result<HttpResponse> r = http_.request_sync(method, url, headers, body, timeout);
    Reply reply;
    if (!r.ok()) {
      ADD_FAILURE() << method << " " << url << ": " << r.error().describe();
      return reply;
    }
    reply.status = r->status;
    reply.text = r->body;
    reply.headers = r->headers;
    reply.body = json::parse(r->body, nullptr, false);
    return reply;
  }
  Reply get(const std::string& path) { return call("GET", base_ + path); }
  Reply post(const std::string& path, const json& body, bool with_token = true,
             std::vector<HttpHeader> headers = {}) {
    if (with_token) headers.push_back({"Authorization", std::string("Bearer ") + kToken});
    return call("POST", base_ + path, body.dump(), std::move(headers));
  }

  // Submits a task and waits for its outcome (the whole reply: {"id","state","outcome",...}).
  Reply submit(const std::string& agent, const std::string& type = "code_review") {
    return post("/v1/tasks?wait=30",
                {{"type", type}, {"agent", agent}, {"payload", {{"content", "int main() {}\n"}}}});
  }

  json agent(const std::string& name) { return get("/v1/agents/" + name).body; }
  std::string agent_url(const std::string& name) {
    return agent(name)["replicas"][0]["url"].get<std::string>();
  }
  // Sets an agent's chaos knobs through its own admin endpoint (docs: examples/agent/README.md).
  void chaos(const std::string& name, const json& knobs) {
    Reply r = call("POST", agent_url(name) + "/admin/chaos", knobs.dump());
    ASSERT_EQ(r.status, 200) << r.text;
  }
  json agent_stats(const std::string& name) {
    return call("GET", agent_url(name) + "/admin/chaos").body["counters"];
  }
  std::string metrics() { return get("/metrics").text; }

  // Waits until the agent's first replica runs as a process other than `old_pid`, and is ready.
  void wait_until_restarted(const std::string& name, int old_pid) {
    wait_until(
        [&] {
          json replica = agent(name)["replicas"][0];
          return replica["pid"].get<int>() != old_pid && replica["pid"].get<int>() > 0 &&
                 replica["ready"].get<bool>();
        },
        15s, "the " + name + " to be restarted and ready");
  }

  template <class Pred>
  void wait_until(Pred pred, std::chrono::milliseconds limit, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        FAIL() << "timed out waiting for " << what << "; daemon log:\n" << log();
      }
      std::this_thread::sleep_for(50ms);
    }
  }

  TempDir dir_{"mend-serve"};
  WebhookSink webhook_;
  IoLoop io_;
  HttpClient http_{io_.executor()};
  std::unique_ptr<ChildProcess> daemon_;
  std::string base_;
  // A program (full path) and its arguments that run `mend serve` (appended to them); empty: mend
  // runs directly. The disk-full test gives it a small filesystem of its own this way.
  std::vector<std::string> launcher_;
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SERVE_SERVE_FIXTURE_H_
