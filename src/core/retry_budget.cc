#include "mend/core/retry_budget.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mend {

namespace {

constexpr double kMilli = 1000;

// The stripe of the calling thread: threads take stripes in turn as they first count.
int thread_stripe(int stripes) noexcept {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(mine % static_cast<unsigned>(stripes));
}

std::int64_t ns_of(TimePoint t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

double RetryBudget::Reading::actual_success() const noexcept {
  return calls == 0 ? 1.0 : static_cast<double>(calls - failures) / static_cast<double>(calls);
}

double RetryBudget::Reading::effective_success() const noexcept {
  const std::uint64_t r = requests();
  if (r == 0) return 1.0;
  return std::min(1.0, static_cast<double>(calls - failures) / static_cast<double>(r));
}

RetryBudget::RetryBudget(RetryBudgetOptions options) : options_(options) {
  auto invalid = [](const std::string& what) {
    throw std::invalid_argument("retry budget: " + what);
  };
  auto cost_ok = [](double c) { return c >= 0 && c <= 1000; };
  if (!(options.ratio >= 0 && options.ratio <= 1000)) invalid("ratio must be in [0, 1000]");
  if (!(options.min_retries_per_second >= 0 && options.min_retries_per_second <= 1e6)) {
    invalid("min_retries_per_second must be in [0, 1000000]");
  }
  if (options.window < std::chrono::milliseconds(10) || options.window > std::chrono::hours(1)) {
    invalid("window must be between 10ms and 1h");
  }
  if (!cost_ok(options.other_replica_cost) || !cost_ok(options.plain_cost) ||
      !cost_ok(options.overload_cost)) {
    invalid("costs must be in [0, 1000]");
  }
  if (!(options.overload_failure_share > 0 && options.overload_failure_share <= 1)) {
    invalid("overload_failure_share must be in (0, 1]");
  }
  if (options.overload_minimum_calls < 0) invalid("overload_minimum_calls must be >= 0");
  if (options.min_retries_in_flight < 0) invalid("min_retries_in_flight must be >= 0");
  bucket_ns_ = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::nanoseconds>(options.window).count() / kBuckets);
}

std::int64_t RetryBudget::bucket_number(TimePoint now) const noexcept {
  const std::int64_t ns = ns_of(now);
  return ns >= 0 ? ns / bucket_ns_ : 0;
}

RetryBudget::Bucket& RetryBudget::bucket_for(std::array<Bucket, kBuckets>& buckets,
                                             std::int64_t n) noexcept {
  Bucket& b = buckets[static_cast<std::size_t>(n % kBuckets)];
  std::int64_t held = b.number.load(std::memory_order_relaxed);
  if (held != n && held < n &&
      b.number.compare_exchange_strong(held, n, std::memory_order_relaxed)) {
    // It held a bucket that has left the window: this one starts empty.
    b.a.store(0, std::memory_order_relaxed);
    b.b.store(0, std::memory_order_relaxed);
  }
  return b;
}

void RetryBudget::count(TimePoint now, bool failed) noexcept {
  Stripe& s = stripes_[static_cast<std::size_t>(thread_stripe(kStripes))];
  const std::int64_t ns = ns_of(now);
  const std::int64_t start = s.start_ns.load(std::memory_order_relaxed);
  Bucket* b;
  if (start >= 0 &&
      static_cast<std::uint64_t>(ns - start) < static_cast<std::uint64_t>(bucket_ns_)) {
    // The bucket being written: a load and a store (another thread on this stripe may rarely
    // overwrite an increment; see the header).
    b = &s.buckets[static_cast<std::size_t>(s.slot.load(std::memory_order_relaxed))];
  } else {
    const std::int64_t n = bucket_number(now);
    b = &bucket_for(s.buckets, n);
    s.slot.store(static_cast<int>(n % kBuckets), std::memory_order_relaxed);
    s.start_ns.store(n * bucket_ns_, std::memory_order_relaxed);
  }
  b->a.store(b->a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (failed) b->b.store(b->b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

RetryCost RetryBudget::cost_of(const Error& error, bool other_replica) noexcept {
  // Timeouts, a request to slow down, and any answer carrying Retry-After (the agent's pushback)
  // say the agent has more work than it can do: a retry adds to it.
  if (error.type == ErrorType::network_timeout || error.type == ErrorType::rate_limit_exceeded ||
      (error.status && (*error.status == 429 || *error.status == 504)) || error.retry_after) {
    return RetryCost::overload;
  }
  return other_replica ? RetryCost::other_replica : RetryCost::plain;
}

double RetryBudget::cost_milli(RetryCost cost) const noexcept {
  switch (cost) {
    case RetryCost::other_replica:
      return options_.other_replica_cost * kMilli;
    case RetryCost::plain:
      return options_.plain_cost * kMilli;
    case RetryCost::overload:
      return options_.overload_cost * kMilli;
  }
  return options_.plain_cost * kMilli;
}

RetryBudget::Reading RetryBudget::reading(TimePoint now) const noexcept {
  Reading r;
  const std::int64_t n = bucket_number(now);
  auto current = [&](const Bucket& b) {
    const std::int64_t held = b.number.load(std::memory_order_relaxed);
    return held >= 0 && held <= n && held > n - kBuckets;
  };
  std::uint64_t spent_milli = 0;
  for (const Stripe& s : stripes_) {
    for (const Bucket& b : s.buckets) {
      if (!current(b)) continue;
      r.calls += b.a.load(std::memory_order_relaxed);
      r.failures += b.b.load(std::memory_order_relaxed);
    }
  }
  for (const Bucket& b : retries_) {
    if (!current(b)) continue;
    r.retries += b.a.load(std::memory_order_relaxed);
    spent_milli += b.b.load(std::memory_order_relaxed);
  }
  r.failures = std::min(r.failures, r.calls);
  r.spent = static_cast<double>(spent_milli) / kMilli;
  const double window_seconds = std::chrono::duration<double>(options_.window).count();
  r.allowance = options_.ratio * static_cast<double>(r.requests()) +
                options_.min_retries_per_second * window_seconds;
  return r;
}

bool RetryBudget::try_acquire_retry(RetryCost cost, TimePoint now) noexcept {
  const Reading r = reading(now);
  // Failures across the agent's calls: whatever this one was, the agent is overloaded or down.
  if (r.calls >= static_cast<std::uint64_t>(options_.overload_minimum_calls) && r.calls > 0 &&
      static_cast<double>(r.failures) >=
          options_.overload_failure_share * static_cast<double>(r.calls)) {
    cost = RetryCost::overload;
  }
  const double price = cost_milli(cost);
  const bool affordable = static_cast<double>(r.spent) * kMilli + price <= r.allowance * kMilli;
  int in_flight = in_flight_.load(std::memory_order_relaxed);
  while (true) {
    if (!affordable && in_flight >= options_.min_retries_in_flight) return false;
    if (in_flight_.compare_exchange_weak(in_flight, in_flight + 1, std::memory_order_relaxed)) {
      break;
    }
  }
  Bucket& b = bucket_for(retries_, bucket_number(now));
  b.a.fetch_add(1, std::memory_order_relaxed);
  b.b.fetch_add(static_cast<std::uint32_t>(std::llround(price)), std::memory_order_relaxed);
  return true;
}

void RetryBudget::release_retry() noexcept {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace mend
