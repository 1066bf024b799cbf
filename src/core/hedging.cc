#include "mend/core/hedging.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace mend {
namespace {

using Nanos = std::chrono::nanoseconds;

// The buckets' upper bounds in nanoseconds: 100 us, then 20 % more each.
const std::array<std::int64_t, LatencyQuantile::kBuckets>& bounds() {
  static const auto table = [] {
    std::array<std::int64_t, LatencyQuantile::kBuckets> b{};
    double ns = 100'000;
    for (int i = 0; i < LatencyQuantile::kBuckets; ++i) {
      b[i] = static_cast<std::int64_t>(std::llround(ns));
      ns *= 1.2;
    }
    return b;
  }();
  return table;
}

const HedgingOptions& checked(const HedgingOptions& o) {
  auto invalid = [](const std::string& what) { throw std::invalid_argument("hedging: " + what); };
  if (o.delay && *o.delay <= Duration::zero()) invalid("delay must be positive");
  if (!(o.quantile > 0 && o.quantile < 1)) {
    invalid("quantile must be between 0 and 1 (0.95 is the p95)");
  }
  if (o.min_delay < Duration::zero()) invalid("min_delay must not be negative");
  if (o.max_delay <= Duration::zero()) invalid("max_delay must be positive");
  if (o.min_delay > o.max_delay) invalid("min_delay must not be above max_delay");
  if (o.window <= Duration::zero()) invalid("window must be positive");
  if (o.min_samples < 1) invalid("min_samples must be at least 1");
  return o;
}

}  // namespace

// --- LatencyQuantile
// ------------------------------------------------------------------------------

LatencyQuantile::LatencyQuantile(Duration window, int min_samples)
    : half_(window / 2), min_samples_(min_samples) {
  if (window <= Duration::zero() || half_ <= Duration::zero()) {
    throw std::invalid_argument("latency quantile: window must be positive");
  }
  if (min_samples < 1) throw std::invalid_argument("latency quantile: min_samples must be >= 1");
}

Duration LatencyQuantile::upper_bound(int bucket) noexcept {
  if (bucket >= kBuckets - 1) return Duration::max();
  return std::chrono::duration_cast<Duration>(Nanos(bounds()[std::max(bucket, 0)]));
}

int LatencyQuantile::bucket_of(Duration latency) noexcept {
  const std::int64_t ns = std::chrono::duration_cast<Nanos>(latency).count();
  const auto& b = bounds();
  // The first bucket whose bound holds it; the last holds everything above.
  const auto it = std::lower_bound(b.begin(), b.end() - 1, ns);
  return static_cast<int>(it - b.begin());
}

void LatencyQuantile::rotate(TimePoint now) const {
  if (!current_start_) {
    current_start_ = now;
    return;
  }
  if (now < *current_start_ + half_) return;
  if (now < *current_start_ + 2 * half_) {
    previous_ = current_;
    previous_total_ = current_total_;
    *current_start_ += half_;
  } else {
    previous_.fill(0);
    previous_total_ = 0;
    current_start_ = now;
  }
  current_.fill(0);
  current_total_ = 0;
}

void LatencyQuantile::record(Duration latency, TimePoint now) {
  const int bucket = bucket_of(std::max(latency, Duration::zero()));
  MutexLock lock(mu_);
  rotate(now);
  ++current_[bucket];
  ++current_total_;
}

std::optional<Duration> LatencyQuantile::quantile(double q, TimePoint now) const {
  MutexLock lock(mu_);
  rotate(now);
  const std::uint64_t total = current_total_ + previous_total_;
  if (total == 0 || total < static_cast<std::uint64_t>(min_samples_)) return std::nullopt;
  // The smallest bucket bound with at least q of the samples at or below it.
  const double wanted = std::ceil(q * static_cast<double>(total));
  std::uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += std::uint64_t{current_[i]} + previous_[i];
    if (static_cast<double>(seen) >= wanted) return upper_bound(i);
  }
  return upper_bound(kBuckets - 1);
}

std::uint64_t LatencyQuantile::samples(TimePoint now) const {
  MutexLock lock(mu_);
  rotate(now);
  return current_total_ + previous_total_;
}

// --- HedgingPolicy
// --------------------------------------------------------------------------------

HedgingPolicy::HedgingPolicy(HedgingOptions options)
    : options_(checked(options)), latencies_(options_.window, options_.min_samples) {}

bool HedgingPolicy::hedges(std::string_view task_type) const noexcept {
  for (const std::string& t : options_.task_types) {
    if (t == "*" || (!task_type.empty() && t == task_type)) return true;
  }
  return false;
}

std::optional<Duration> HedgingPolicy::delay(TimePoint now) const {
  if (options_.delay) return *options_.delay;
  const std::optional<Duration> q = latencies_.quantile(options_.quantile, now);
  if (!q) return options_.max_delay;                 // not trusted yet
  if (*q > options_.max_delay) return std::nullopt;  // the agent is slow, not a replica
  return std::max(*q, options_.min_delay);
}

void HedgingPolicy::record(Duration latency, TimePoint now) {
  if (options_.delay) return;
  latencies_.record(latency, now);
}

}  // namespace mend
