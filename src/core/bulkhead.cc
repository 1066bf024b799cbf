#include "mend/core/bulkhead.h"

#include <algorithm>
#include <stdexcept>

namespace mend {

Bulkhead::Bulkhead(std::string name, BulkheadOptions options)
    : name_(std::move(name)), options_(options) {
  if (options_.max_concurrent < 1)
    throw std::invalid_argument("bulkhead: max_concurrent must be >= 1");
  if (options_.max_queue < 0) throw std::invalid_argument("bulkhead: max_queue must be >= 0");
  if (options_.max_wait < Duration::zero() || options_.max_wait > std::chrono::hours(24 * 365)) {
    throw std::invalid_argument("bulkhead: max_wait must be between 0 and one year");
  }
}

bool Bulkhead::try_take() noexcept {
  // seq_cst, pairing with leave(): a waiter's "waiting_++ then read in_use_" and a leaver's
  // "in_use_-- then read waiting_" must not both read the old values (store buffering), or the
  // waiter would sleep past a free slot.
  int used = in_use_.load(std::memory_order_seq_cst);
  while (used < options_.max_concurrent) {
    if (in_use_.compare_exchange_weak(used, used + 1, std::memory_order_seq_cst)) return true;
  }
  return false;
}

bool Bulkhead::try_enter() noexcept {
  if (waiting_.load(std::memory_order_seq_cst) > 0) return false;  // no barging past the queue
  return try_take();
}

Bulkhead::Admission Bulkhead::enter(const std::stop_token& stop) {
  if (stop.stop_requested()) return Admission::cancelled;
  if (try_enter()) return Admission::admitted;
  if (options_.max_queue == 0 || options_.max_wait <= Duration::zero())
    return Admission::queue_full;

  MutexLock lock(mu_);
  if (static_cast<int>(queue_.size()) >= options_.max_queue) return Admission::queue_full;
  const std::uint64_t ticket = next_ticket_++;
  queue_.push_back(ticket);
  waiting_.fetch_add(1, std::memory_order_seq_cst);
  const auto deadline = std::chrono::steady_clock::now() + options_.max_wait;
  bool admitted = false;
  // Only the head of the queue may take a slot: arrival order is kept.
  cv_.wait_until(lock.native(), stop, deadline, [&]() MEND_REQUIRES(mu_) {
    admitted = queue_.front() == ticket && try_take();
    return admitted;
  });
  queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
  waiting_.fetch_sub(1, std::memory_order_seq_cst);
  // The next in line may be able to go now (a slot may have freed while we left).
  cv_.notify_all();
  if (admitted) return Admission::admitted;
  return stop.stop_requested() ? Admission::cancelled : Admission::timed_out;
}

void Bulkhead::leave() noexcept {
  in_use_.fetch_sub(1, std::memory_order_seq_cst);
  if (waiting_.load(std::memory_order_seq_cst) > 0) {
    // Taking the lock orders this notify after a waiter's check-then-wait: no lost wake-up.
    MutexLock lock(mu_);
    cv_.notify_all();
  }
}

Error Bulkhead::rejection(Admission admission) const {
  std::string message =
      "bulkhead '" + name_ + "' is full (" + std::to_string(options_.max_concurrent) + " in use";
  switch (admission) {
    case Admission::queue_full:
      message += options_.max_queue > 0 ? ", wait queue full)" : ", no waiting allowed)";
      break;
    case Admission::timed_out:
      message += ", waited " + std::to_string(to_seconds(options_.max_wait)) + " s)";
      break;
    case Admission::cancelled:
      message += ", cancelled while waiting)";
      break;
    case Admission::admitted:
      message += ")";
      break;
  }
  Error e = Error::classified_as(ErrorType::connection_pool_exhausted, Severity::medium,
                                 std::move(message));
  e.kind = "bulkhead_full";
  e.stop = admission == Admission::cancelled ? StopReason::cancelled : StopReason::bulkhead_full;
  return e;
}

}  // namespace mend
