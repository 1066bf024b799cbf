// A daemon embedded in the test's process on a manual clock (DaemonOptions::clock): what it
// stamps and measures comes from that clock, not the system's, so that a part of the daemon can be
// checked for what it decides at a given time. Over loopback, with an agent served by the test.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "mend/config.h"
#include "mend/daemon.h"
#include "mend/http_client.h"
#include "mend/http_server.h"
#include "mend/random.h"
#include "mend_test/io_loop.h"

namespace mend {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TEST(DaemonClock, TasksAreStampedAndTimedByTheInjectedClock) {
  HttpServer agent(HttpServerOptions{}, [](const HttpRequest& r) {
    if (r.target == "/health") return HttpResponse{200, {}, R"({"status":"healthy"})"};
    return HttpResponse{200, {{"Content-Type", "application/json"}}, R"({"result":"ok"})"};
  });
  ASSERT_TRUE(agent.start().ok());
  ConfigLoad load = parse_config(
      "server: {port: 0, token: t, drain_timeout: 0s}\n"
      "store: {path: \":memory:\"}\n"
      "agents:\n"
      "  - name: worker\n"
      "    url: " +
          agent.base_url() +
          "\n"
          "    capabilities: [code_review]\n",
      "clock.yaml", "/nonexistent-dir");
  ASSERT_TRUE(load.ok());
  // A wall clock far from today's: a stamp taken from the system clock could not match it.
  ManualClock clock(TimePoint{} + 1h, WallTime(std::chrono::seconds(2'000'000'000)));
  DaemonOptions options;
  options.handle_signals = false;
  options.log = [](std::string_view, std::string_view) {};
  options.clock = &clock;
  Daemon daemon(std::move(*load.config), options);
  ASSERT_TRUE(daemon.start().ok());

  mend::testing::IoLoop io;
  HttpClient http(io.executor());
  Result<HttpResponse> answer =
      http.request_sync("POST", daemon.base_url() + "/v1/tasks?wait=10",
                        {{"Authorization", "Bearer t"}, {"Content-Type", "application/json"}},
                        R"({"type":"code_review","agent":"worker","payload":{}})", 20s);
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  ASSERT_EQ(answer->status, 200) << answer->body;
  json task = json::parse(answer->body);
  EXPECT_EQ(task["submitted_at"], "2033-05-18T03:33:20.000Z") << answer->body;
  EXPECT_EQ(task["outcome"]["status"], "succeeded") << answer->body;
  // The clock stood still while the task ran: measured by it, the task took no time at all.
  EXPECT_EQ(task["outcome"]["elapsed_seconds"], 0.0) << answer->body;
  daemon.stop();
  daemon.wait();
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
  ConfigLoad load = parse_config(
      "server: {port: 0, token: t, drain_timeout: 0s}\n"
      "store: {path: \":memory:\"}\n"
      "policies: {retry: {max_retries: 2, backoff: {base: 50ms, cap: 1s}}}\n"
      "agents:\n"
      "  - name: worker\n"
      "    url: " +
          agent.base_url() + "\n    capabilities: [code_review]\n",
      "random.yaml", "/nonexistent-dir");
  ASSERT_TRUE(load.ok());
  FixedRandom no_jitter(0.5);
  DaemonOptions options;
  options.handle_signals = false;
  options.log = [](std::string_view, std::string_view) {};
  options.random = &no_jitter;
  Daemon daemon(std::move(*load.config), options);
  ASSERT_TRUE(daemon.start().ok());

  mend::testing::IoLoop io;
  HttpClient http(io.executor());
  Result<HttpResponse> answer =
      http.request_sync("POST", daemon.base_url() + "/v1/tasks?wait=10",
                        {{"Authorization", "Bearer t"}, {"Content-Type", "application/json"}},
                        R"({"type":"code_review","agent":"worker","payload":{}})", 20s);
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  json task = json::parse(answer->body);
  EXPECT_EQ(task["outcome"]["status"], "succeeded_after_retry") << answer->body;
  // The seed's backoff is base x 2^attempt, +-25 % by the draw: 0.5 draws no jitter at all.
  EXPECT_EQ(task["outcome"]["attempts"][0]["delay_seconds"], 0.05) << answer->body;
  daemon.stop();
  daemon.wait();
  agent.stop();
}

}  // namespace
}  // namespace mend
