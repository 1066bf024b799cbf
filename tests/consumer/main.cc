// A consumer of mend, built through add_subdirectory and through find_package (one source for
// both): protects a flaky call with retry and a breaker. Built with MEND_CONSUMER_SERVER, it also
// links mend::server and checks a configuration, so that the daemon's layer is consumable too.
#include <mend/core/circuit_breaker.h>
#include <mend/core/pipeline.h>
#ifdef MEND_CONSUMER_SERVER
#include <mend/server/config.h>
#endif

#include <cstdio>
#include <memory>

int main() {
  mend::ManualClock clock;
  mend::ManualSleeper sleeper(clock);
  mend::SeededRandom random(7);
  mend::Env env = mend::Env::system();
  env.clock = &clock;
  env.sleeper = &sleeper;
  env.random = &random;

  auto breaker = std::make_shared<mend::CircuitBreaker>("consumer", mend::CircuitBreakerOptions{});
  mend::Pipeline pipeline =
      mend::Pipeline::Builder().env(env).retry({}).circuit_breaker(breaker).build();

  int calls = 0;
  int answer = pipeline.execute([&] {
    if (++calls < 3) throw std::system_error(std::make_error_code(std::errc::timed_out));
    return 42;
  });
  std::printf("answer %d after %d calls\n", answer, calls);
  if (answer != 42 || calls != 3) return 1;
#ifdef MEND_CONSUMER_SERVER
  mend::ConfigLoad load =
      mend::parse_config("agents:\n  - name: reviewer\n    url: http://127.0.0.1:9/\n");
  if (!load.ok()) {
    for (const auto& problem : load.problems) std::printf("%s\n", problem.to_string().c_str());
    return 1;
  }
  std::printf("configuration with %zu agent\n", load.config->agents.size());
  if (load.config->agents.size() != 1) return 1;
#endif
  return 0;
}
