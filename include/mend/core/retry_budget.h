// File: mend/core/retry_budget.h
//
// A retry budget keeps retries from multiplying load during an outage. It is gRPC's retry
// throttling token bucket (gRFC A6): the bucket starts full with `max_tokens`; every failed
// attempt takes one token, every success puts back `token_ratio`; a retry is allowed only while
// more than half the tokens remain. When most calls fail the bucket drains and retries stop, so
// a hard-down backend sees about one request per call instead of max_retries + 1; as calls
// succeed again it refills. From Envoy's retry budgets it takes a floor: however empty the
// bucket, up to `min_retries_in_flight` retries may be in flight at once (0 turns the floor off,
// the default, so a single-threaded caller is throttled too).
//
//   auto budget = std::make_shared<mend::RetryBudget>(mend::RetryBudgetOptions{});
//   mend::RetryOptions retry;
//   retry.budget = budget;           // share one budget among the calls to one backend
//
// Thread-safety: every method is lock-free and safe from many threads. record_success() on a full
// bucket only reads, so a healthy service pays no shared write.
#ifndef MEND_CORE_RETRY_BUDGET_H_
#define MEND_CORE_RETRY_BUDGET_H_

#include <atomic>
#include <cstdint>

namespace mend {

struct RetryBudgetOptions {
  double max_tokens = 100;        // gRPC allows 1..1000; retries stop below half of it
  double token_ratio = 0.1;       // gRPC's example: ten successes repay one failure
  int min_retries_in_flight = 0;  // Envoy-style floor; Envoy's default is 3
};

class RetryBudget {
 public:
  // Throws std::invalid_argument for max_tokens outside (0, 1e6] or a negative ratio or floor.
  explicit RetryBudget(RetryBudgetOptions options = {});

  // A successful attempt: adds token_ratio, up to max_tokens. A full bucket is only read.
  void record_success() noexcept {
    if (milli_tokens_.load(std::memory_order_relaxed) < max_milli_) refill();
  }
  // A failed attempt: takes one token, down to zero.
  void record_failure() noexcept;
  // Asks to make one retry. On true, the caller must call release_retry() once that retry has
  // finished (this is what the in-flight floor counts).
  bool try_acquire_retry() noexcept;
  void release_retry() noexcept;

  double tokens() const noexcept;
  int retries_in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  const RetryBudgetOptions& options() const noexcept { return options_; }

 private:
  void refill() noexcept;

  // Tokens in thousandths, so updates are single integer CAS operations.
  static constexpr std::int64_t kScale = 1000;
  RetryBudgetOptions options_;
  // One line for what record_success() reads on a full bucket.
  alignas(64) std::atomic<std::int64_t> milli_tokens_;
  std::int64_t max_milli_;
  std::int64_t ratio_milli_;
  alignas(64) std::atomic<int> in_flight_{0};
};

}  // namespace mend

#endif  // MEND_CORE_RETRY_BUDGET_H_
