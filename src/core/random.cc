#include "mend/core/random.h"

namespace mend {

std::uint64_t SeededRandom::next_u64() noexcept {
  // SplitMix64 (Steele, Lea, Flood 2014): the state walks by the golden gamma and each value is
  // a bijective mix of it, so concurrent draws each get a distinct, well-mixed value.
  std::uint64_t z =
      state_.fetch_add(0x9E3779B97F4A7C15ULL, std::memory_order_relaxed) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double SeededRandom::next_unit() noexcept {
  // The top 53 bits fill a double's mantissa exactly: uniform on [0, 1).
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

FixedRandom::FixedRandom(double value) {
  constexpr double kBelowOne = 1.0 - 0x1.0p-53;
  value_ = !(value > 0) ? 0 : (value > kBelowOne ? kBelowOne : value);  // NaN -> 0
}

}  // namespace mend
