// File: mend/core/random.h
//
// The random source that jitter draws from. Policies never call rand() themselves: they are
// handed a `RandomSource`, so tests fix the draws and assert exact delays. Production code draws
// from SeededRandom::system() (Env's default), which is defined with core's operating-system code
// (src/core/os/): this header is pure.
//
//   mend::SeededRandom random(42);        // reproducible sequence
//   mend::FixedRandom half(0.5);          // every draw is 0.5: jitter lands in the middle
//
// Thread-safety: implementations must be safe to call from many threads at once. Both here are
// lock-free.
#ifndef MEND_CORE_RANDOM_H_
#define MEND_CORE_RANDOM_H_

#include <atomic>
#include <cstdint>

namespace mend {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // A uniform draw in [0, 1).
  virtual double next_unit() noexcept = 0;
};

// SplitMix64 over an atomic counter: reproducible for one seed when drawn from one thread, and
// still well distributed and race-free when many threads draw at once.
class SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
  double next_unit() noexcept override;
  std::uint64_t next_u64() noexcept;
  // The shared source for production use: seeded from std::random_device, and reseeded in a
  // child made by fork() so that it does not draw its parent's jitter.
  static SeededRandom& system();

 private:
  std::atomic<std::uint64_t> state_;
};

// Returns the same value for every draw (clamped into [0, 1); NaN becomes 0).
class FixedRandom final : public RandomSource {
 public:
  explicit FixedRandom(double value);
  double next_unit() noexcept override { return value_; }

 private:
  double value_;
};

}  // namespace mend

#endif  // MEND_CORE_RANDOM_H_
