#include "mend/core/retry_budget.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "thread_shard.h"

namespace mend {

namespace {

constexpr double kMilli = 1000;

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
    b.retries.store(0, std::memory_order_relaxed);
    b.spent_milli.store(0, std::memory_order_relaxed);
  }
  return b;
}

RetryBudget::Stripe& RetryBudget::stripe() noexcept {
  // The calling thread's stripe (src/core/thread_shard.h): distinct for up to kStripes threads.
  return stripes_[detail::thread_shard() % kStripes];
}

void RetryBudget::record_success(bool retry) noexcept {
  Stripe& s = stripe();
  detail::bump(s.calls);
  if (retry) [[unlikely]]
    detail::bump(s.retry_calls);
}

void RetryBudget::record_failure(bool retry) noexcept {
  Stripe& s = stripe();
  detail::bump(s.calls);
  detail::bump(s.failures);
  if (retry) detail::bump(s.retry_calls);
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
  MutexLock lock(mu_);
  return read_locked(now);
}

RetryBudget::Reading RetryBudget::read_locked(TimePoint now) const {
  Note total{now, 0, 0, 0};
  for (const Stripe& s : stripes_) {
    total.calls += s.calls.load(std::memory_order_relaxed);
    total.failures += s.failures.load(std::memory_order_relaxed);
    total.retry_calls += s.retry_calls.load(std::memory_order_relaxed);
  }
  // Note the totals: a new note once the last is a bucket width old (the oldest goes when the ring
  // is full: the one after it is still before the window's start), else the last one moves up to
  // now, so that notes stay at least a width apart and the latest says what is known latest.
  const Duration width{bucket_ns_};
  if (note_count_ > 0 && now - notes_[static_cast<std::size_t>(note_count_ - 1)].at < width) {
    notes_[static_cast<std::size_t>(note_count_ - 1)] = total;
  } else {
    if (note_count_ == kNotes) {
      std::move(notes_.begin() + 1, notes_.end(), notes_.begin());
      --note_count_;
    }
    notes_[static_cast<std::size_t>(note_count_++)] = total;
  }
  // The totals at the window's start: between the last note at or before it and the next one (or
  // now), linearly; none before it: every call counted since the budget was made.
  const TimePoint start = now - options_.window;
  Note at_start;  // zeros: the budget's beginning
  for (int i = note_count_ - 1; i >= 0; --i) {
    const Note& before = notes_[static_cast<std::size_t>(i)];
    if (before.at > start) continue;
    const Note& after = i + 1 < note_count_ ? notes_[static_cast<std::size_t>(i + 1)] : total;
    at_start = before;
    const Duration span = after.at - before.at;
    if (span > Duration::zero()) {
      const double share =
          std::chrono::duration<double>(start - before.at) / std::chrono::duration<double>(span);
      at_start.calls += static_cast<std::uint64_t>(
          std::llround(share * static_cast<double>(after.calls - before.calls)));
      at_start.failures += static_cast<std::uint64_t>(
          std::llround(share * static_cast<double>(after.failures - before.failures)));
      at_start.retry_calls += static_cast<std::uint64_t>(
          std::llround(share * static_cast<double>(after.retry_calls - before.retry_calls)));
    }
    break;
  }
  Reading r;
  r.calls = total.calls - std::min(total.calls, at_start.calls);
  r.failures = total.failures - std::min(total.failures, at_start.failures);
  r.failures = std::min(r.failures, r.calls);
  r.retry_calls =
      std::min(total.retry_calls - std::min(total.retry_calls, at_start.retry_calls), r.calls);
  const std::int64_t n = bucket_number(now);
  std::uint64_t spent_milli = 0;
  for (const Bucket& b : retries_) {
    const std::int64_t held = b.number.load(std::memory_order_relaxed);
    if (held < 0 || held > n || held <= n - kBuckets) continue;
    r.retries += b.retries.load(std::memory_order_relaxed);
    spent_milli += b.spent_milli.load(std::memory_order_relaxed);
  }
  r.spent = static_cast<double>(spent_milli) / kMilli;
  const double window_seconds = std::chrono::duration<double>(options_.window).count();
  r.allowance = options_.ratio * static_cast<double>(r.requests()) +
                options_.min_retries_per_second * window_seconds;
  return r;
}

bool RetryBudget::overloaded(const Reading& r) const noexcept {
  return r.calls > 0 && r.calls >= static_cast<std::uint64_t>(options_.overload_minimum_calls) &&
         static_cast<double>(r.failures) >=
             options_.overload_failure_share * static_cast<double>(r.calls);
}

bool RetryBudget::try_acquire_retry(RetryCost cost, TimePoint now) noexcept {
  MutexLock lock(mu_);
  const Reading r = read_locked(now);
  // Failures across the agent's calls: whatever this one was, the agent is overloaded or down.
  if (overloaded(r)) cost = RetryCost::overload;
  const double price = cost_milli(cost);
  const bool affordable = r.spent * kMilli + price <= r.allowance * kMilli;
  int in_flight = in_flight_.load(std::memory_order_relaxed);
  while (true) {
    if (!affordable && in_flight >= options_.min_retries_in_flight) return false;
    if (in_flight_.compare_exchange_weak(in_flight, in_flight + 1, std::memory_order_relaxed)) {
      break;
    }
  }
  Bucket& b = bucket_for(retries_, bucket_number(now));
  b.retries.fetch_add(1, std::memory_order_relaxed);
  b.spent_milli.fetch_add(static_cast<std::uint32_t>(std::llround(price)),
                          std::memory_order_relaxed);
  return true;
}

void RetryBudget::release_retry() noexcept {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace mend
