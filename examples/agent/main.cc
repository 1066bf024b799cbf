// mend-sample-agent: a small agent speaking docs/agent-protocol.md, with chaos knobs set by flags
// or POST /admin/chaos. README.md beside this file lists the flags and endpoints.
//
//   mend-sample-agent --port 8101 --name reviewer --fail 503=0.2 --latency 50
//   listening on http://127.0.0.1:8101
//
// Stops on SIGINT or SIGTERM (exit status 0).

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "agent.h"
#include "mend/runtime/http_server.h"

int main(int argc, char** argv) {
  using mend::sample_agent::ChaosKnobs;

  CLI::App app{"mend-sample-agent: an agent speaking mend's agent protocol, with chaos knobs"};
  unsigned short port = 0;
  std::string bind = "127.0.0.1";
  mend::sample_agent::AgentOptions options;
  double latency_ms = 0;
  std::vector<std::string> fail_flags;
  double retry_after = 1.0;
  double timeout_delay = 60.0;
  bool hang = false;
  std::int64_t crash_after = 0;
  std::size_t memory_growth_kib = 0;
  std::size_t memory_limit_mib = 64;
  bool unhealthy = false;
  bool database_down = false;
  std::size_t threads = 1;

  app.add_option("--port", port, "TCP port; 0 = any free port (printed)")
      ->envname("PORT")
      ->capture_default_str();
  app.add_option("--bind", bind, "IP address to listen on")->capture_default_str();
  app.add_option("--name", options.name, "the agent's name, in answers and /stats")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "seed of the failure draws; 0 = random")
      ->capture_default_str();
  app.add_option("--latency", latency_ms, "milliseconds added before every task answer")
      ->check(CLI::Range(0.0, 86'400'000.0));
  app.add_option("--fail", fail_flags,
                 "KIND=RATE, repeatable: fail that share of tasks with KIND (timeout, reset, "
                 "429, 503, 500, database, external, critical)");
  app.add_option("--retry-after", retry_after, "seconds in the Retry-After of 429 answers")
      ->check(CLI::Range(0.0, 86'400.0))
      ->capture_default_str();
  app.add_option("--timeout-delay", timeout_delay,
                 "seconds a 'timeout' failure waits before answering 504")
      ->check(CLI::Range(0.0, 86'400.0))
      ->capture_default_str();
  app.add_flag("--hang", hang, "never answer tasks (until the client gives up)");
  app.add_option("--crash-after", crash_after, "exit with status 1 after N tasks answered")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--memory-growth", memory_growth_kib, "KiB the cache grows by per task")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  app.add_option("--memory-limit", memory_limit_mib,
                 "MiB of cache that is 100 % in /health's memory_percent")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--pool-size", options.pool_size, "connections in the pretend pool")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_flag("--unhealthy", unhealthy, "GET /health answers 503 unhealthy");
  app.add_flag("--database-down", database_down,
               "tasks fail with database_error until /admin/reconnect-database");
  app.add_option("--token", options.bearer_token, "require Authorization: Bearer TOKEN")
      ->envname("AGENT_TOKEN");
  app.add_flag("--restart-exits", options.restart_exits,
               "/admin/restart answers 202 and exits 0 (for a supervisor) instead of "
               "restarting in-process");
  app.add_option("--threads", threads, "server threads")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  ChaosKnobs knobs;
  for (const std::string& flag : fail_flags) {
    auto parsed = mend::sample_agent::parse_fail_flag(flag);
    if (!parsed.ok()) {
      std::fprintf(stderr, "mend-sample-agent: %s\n", parsed.error().message.c_str());
      return 2;
    }
    knobs.fail_rates[parsed->first] = parsed->second;
  }
  knobs.latency = std::chrono::milliseconds(static_cast<std::int64_t>(latency_ms));
  knobs.retry_after_seconds = retry_after;
  knobs.timeout_delay = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_delay * 1000));
  knobs.hang = hang;
  knobs.crash_countdown = crash_after;
  knobs.memory_growth_kib = memory_growth_kib;
  knobs.unhealthy = unhealthy;
  knobs.database_down = database_down;
  options.memory_limit_bytes = memory_limit_mib << 20;

  // Signals are taken by sigwait below, not by whichever thread they land on.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  mend::sample_agent::SampleAgent agent(options, knobs);
  mend::HttpServerOptions server_options;
  server_options.bind_address = bind;
  server_options.port = port;
  server_options.threads = threads;
  server_options.max_connections = 1024;
  mend::HttpServer server(server_options, [&agent](mend::HttpRequest request,
                                                   std::shared_ptr<mend::HttpResponder> responder) {
    agent.handle(std::move(request), std::move(responder));
  });
  if (auto started = server.start(); !started.ok()) {
    std::fprintf(stderr, "mend-sample-agent: %s\n", started.error().message.c_str());
    return 1;
  }
  std::printf("listening on %s\n", server.base_url().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "%s: stopping on signal %d\n", options.name.c_str(), signal_number);
  server.stop();  // before the agent goes: the server calls it
  return 0;
}
