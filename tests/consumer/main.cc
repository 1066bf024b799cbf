// A consumer of mend, built through add_subdirectory and through find_package (one source for
// both): protects a flaky call with retry and a breaker.
#include <mend/circuit_breaker.h>
#include <mend/pipeline.h>

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
  return answer == 42 && calls == 3 ? 0 : 1;
}
