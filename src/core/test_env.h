// Test support: an Env on a manual clock, a sleeper that advances it, a fixed or seeded random
// source and a recording event sink. Nothing in it sleeps.
#ifndef MEND_SRC_CORE_TEST_ENV_H_
#define MEND_SRC_CORE_TEST_ENV_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "mend/core/env.h"
#include "mend/core/events.h"
#include "mend/core/random.h"

namespace mend::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A random source that counts its draws (a test that must draw nothing checks `draws`): its values
// are a seeded source's, or 0.5 each (no jitter) when it has no seed.
class CountingRandom final : public RandomSource {
 public:
  CountingRandom() = default;
  explicit CountingRandom(std::uint64_t seed) : inner_(std::in_place, seed) {}
  double next_unit() noexcept override {
    ++draws;
    return inner_ ? inner_->next_unit() : 0.5;
  }
  int draws = 0;

 private:
  std::optional<SeededRandom> inner_;
};

struct TestEnv {
  ManualClock clock;
  ManualSleeper sleeper{clock};
  std::unique_ptr<RandomSource> random = std::make_unique<FixedRandom>(0.5);  // no jitter
  RecordingEventSink events;

  Env env() {
    Env e = Env::system();
    e.clock = &clock;
    e.sleeper = &sleeper;
    e.random = random.get();
    e.events = &events;
    return e;
  }
  TimePoint start() const { return start_; }
  Duration elapsed() const { return clock.now() - start_; }

 private:
  TimePoint start_ = clock.now();
};

inline Duration secs(double s) {
  return from_seconds(s);
}

}  // namespace mend::testing

#endif  // MEND_SRC_CORE_TEST_ENV_H_
