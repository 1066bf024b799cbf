#include "mend/core/retry_budget.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mend {

RetryBudget::RetryBudget(RetryBudgetOptions options) : options_(options) {
  if (!(options.max_tokens > 0 && options.max_tokens <= 1e6)) {
    throw std::invalid_argument("retry budget: max_tokens must be in (0, 1000000]");
  }
  if (!(options.token_ratio >= 0 && options.token_ratio <= options.max_tokens)) {
    throw std::invalid_argument("retry budget: token_ratio must be in [0, max_tokens]");
  }
  if (options.min_retries_in_flight < 0) {
    throw std::invalid_argument("retry budget: min_retries_in_flight must be >= 0");
  }
  max_milli_ = std::llround(options.max_tokens * kScale);
  ratio_milli_ = std::llround(options.token_ratio * kScale);
  milli_tokens_.store(max_milli_, std::memory_order_relaxed);
}

void RetryBudget::refill() noexcept {
  std::int64_t cur = milli_tokens_.load(std::memory_order_relaxed);
  while (cur < max_milli_) {
    std::int64_t next = std::min(max_milli_, cur + ratio_milli_);
    if (milli_tokens_.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
  }
}

void RetryBudget::record_failure() noexcept {
  std::int64_t cur = milli_tokens_.load(std::memory_order_relaxed);
  while (cur > 0) {
    std::int64_t next = std::max<std::int64_t>(0, cur - kScale);
    if (milli_tokens_.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
  }
}

bool RetryBudget::try_acquire_retry() noexcept {
  // gRFC A6: retry only while tokens > max_tokens / 2.
  bool tokens_allow = 2 * milli_tokens_.load(std::memory_order_relaxed) > max_milli_;
  int in_flight = in_flight_.load(std::memory_order_relaxed);
  while (true) {
    if (!tokens_allow && in_flight >= options_.min_retries_in_flight) return false;
    if (in_flight_.compare_exchange_weak(in_flight, in_flight + 1, std::memory_order_relaxed)) {
      return true;
    }
  }
}

void RetryBudget::release_retry() noexcept {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
}

double RetryBudget::tokens() const noexcept {
  return static_cast<double>(milli_tokens_.load(std::memory_order_relaxed)) / kScale;
}

}  // namespace mend
