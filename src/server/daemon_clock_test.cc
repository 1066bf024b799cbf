// A daemon embedded in the test's process on a manual clock (DaemonOptions::clock): what it
// stamps and measures comes from that clock, not the system's, so that a part of the daemon can be
// checked for what it decides at a given time. Over loopback, with an agent served by the test.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "mend/core/random.h"
#include "mend/runtime/http_client.h"
#include "mend/runtime/http_server.h"
#include "mend/server/config.h"
#include "mend/server/daemon.h"
#include "mend_test/io_loop.h"

namespace mend {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Runs one task (code_review, with ?wait=) through a daemon embedded with `options` whose one
// agent is `agent`; `policies` is the configuration's policies line, or empty. Returns the task
// as the API answered it, or null after a test failure.
json run_one_task(const HttpServer& agent, DaemonOptions options,
                  const std::string& policies = "") {
  ConfigLoad load = parse_config(
      "server: {port: 0, token: t, drain_timeout: 0s}\n"
      "store: {path: \":memory:\"}\n" +
          policies +
          "agents:\n"
          "  - name: worker\n"
          "    url: " +
          agent.base_url() + "\n    capabilities: [code_review]\n",
      "embedded.yaml", "/nonexistent-dir");
  if (!load.ok()) {
    ADD_FAILURE() << "the configuration was refused";
    return nullptr;
  }
  options.handle_signals = false;
  options.log = [](std::string_view, std::string_view) {};
  Daemon daemon(std::move(*load.config), options);
  if (Result<void> started = daemon.start(); !started.ok()) {
    ADD_FAILURE() << started.error().describe();
    return nullptr;
  }
  mend::testing::IoLoop io;
  HttpClient http(io.executor());
  Result<HttpResponse> answer =
      http.request_sync("POST", daemon.base_url() + "/v1/tasks?wait=10",
                        {{"Authorization", "Bearer t"}, {"Content-Type", "application/json"}},
                        R"({"type":"code_review","agent":"worker","payload":{}})", 20s);
  daemon.stop();
  daemon.wait();
  if (!answer.ok() || answer->status != 200) {
    ADD_FAILURE() << (answer.ok() ? answer->body : answer.error().describe());
    return nullptr;
  }
  return json::parse(answer->body);
}

TEST(DaemonClock, TasksAreStampedAndTimedByTheInjectedClock) {
  HttpServer agent(HttpServerOptions{}, [](const HttpRequest& r) {
    if (r.target == "/health") return HttpResponse{200, {}, R"({"status":"healthy"})"};
    return HttpResponse{200, {{"Content-Type", "application/json"}}, R"({"result":"ok"})"};
  });
  ASSERT_TRUE(agent.start().ok());
  // A wall clock far from today's: a stamp taken from the system clock could not match it.
  ManualClock clock(TimePoint{} + 1h, WallTime(std::chrono::seconds(2'000'000'000)));
  DaemonOptions options;
  options.clock = &clock;
  json task = run_one_task(agent, options);
  EXPECT_EQ(task["submitted_at"], "2033-05-18T03:33:20.000Z") << task.dump();
  EXPECT_EQ(task["outcome"]["status"], "succeeded") << task.dump();
  // The clock stood still while the task ran: measured by it, the task took no time at all.
  EXPECT_EQ(task["outcome"]["elapsed_seconds"], 0.0) << task.dump();
  agent.stop();
}

// The daemon's draws come from DaemonOptions::random: with a fixed source the backoff has no
// jitter, and a retry's delay is exactly the configured base.
TEST(DaemonRandom, BackoffJitterIsDrawnFromTheInjectedSource) {
  std::atomic<int> calls{0};
  HttpServer agent(HttpServerOptions{}, [&](const HttpRequest& r) {
    if (r.target == "/health") return HttpResponse{200, {}, R"({"status":"healthy"})"};
    if (++calls == 1) return HttpResponse{503, {}, R"({"error":{"type":"temporary_unavailable"}})"};
    return HttpResponse{200, {{"Content-Type", "application/json"}}, R"({"result":"ok"})"};
  });
  ASSERT_TRUE(agent.start().ok());
  FixedRandom no_jitter(0.5);
  DaemonOptions options;
  options.random = &no_jitter;
  json task = run_one_task(agent, options,
                           "policies: {retry: {max_retries: 2, backoff: {base: 50ms, cap: 1s}}}\n");
  EXPECT_EQ(task["outcome"]["status"], "succeeded_after_retry") << task.dump();
  // The default backoff, error_scaled, is base x 2^attempt, +-25 % by the draw: 0.5 draws none.
  EXPECT_EQ(task["outcome"]["attempts"][0]["delay_seconds"], 0.05) << task.dump();
  agent.stop();
}

}  // namespace
}  // namespace mend
