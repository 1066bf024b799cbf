// File: mend/core/retry_budget.h
//
// A retry budget keeps retries from multiplying load when an agent is overloaded or down, and
// lets them through when only some calls fail (a gray failure), where a retry is how a request
// still gets a real answer. It tells the two apart by what failed and how much of it:
//
//   - over a sliding window (10 s), retries may cost at most `ratio` (0.5) per request plus a
//     floor of `min_retries_per_second` (10) for low traffic (Finagle's and Linkerd's shape: a
//     share of requests plus a rate, over a time window);
//   - a retry costs by the kind of failure it answers (RetryCost), as the AWS SDKs' retry quota
//     charges a timeout more than an error, but with the agent's replicas in view:
//       other_replica (0.5): a fast error from one replica, and the retry can go to another the
//         request has not failed on (the likeliest to be a gray failure, and the cheapest retry);
//       plain (1): a fast error with nowhere else to go (one replica);
//       overload (5): a timeout, a 429, or an answer with Retry-After (the agent's pushback), or
//         any failure once `overload_failure_share` (50 %) of the window's calls fail: failures
//         across every replica are an outage or an overload, where retries only add load.
//   So with 30 % of calls failing at random, every retry goes (0.43 retries per request at
//   most, for 3 retries, under 0.5); with every call failing, one retry per ten requests (0.5 /
//   5) on top of the floor, where gRPC's token bucket stops all retries past about 10 % of
//   failures and Envoy's 20 % of active requests lets 20 % through to a dead agent.
//   docs/policies.md, "The retry budget", has the measurements the defaults come from.
//   - `min_retries_in_flight` (0: off) lets that many retries be in flight whatever the window
//     says (Envoy's floor of 3).
//
//   auto budget = std::make_shared<mend::RetryBudget>(mend::RetryBudgetOptions{});
//   mend::RetryOptions retry;
//   retry.budget = budget;  // one budget per agent: its calls are what it measures
//   // AttemptPolicy (mend/core/attempt_policy.h) does the rest: record_success/record_failure for
//   // every call, try_acquire_retry(cost_of(error, other_replica), now) for every retry, and
//   // release_retry() when the retry's call has ended.
//
// Retries are counted in ten buckets of window / 10 (a bucket leaves the window whole); calls and
// failures as totals, the window's share read off them (Thread-safety, below). What the budget
// counts (calls, failures, retries, cost spent) is also what mend exports as an agent's actual
// (per attempt) and effective (per request, after retries) success: reading().
//
// Thread-safety: every method is safe from many threads at once. record_success() and
// record_failure() are lock-free and read no clock: each adds to a total of the calling thread's
// stripe (threads alive at once have distinct stripes, up to 8), so threads calling the same agent
// do not write the same cache line on the success path (a load and a store). reading() and
// try_acquire_retry() take a mutex: they run on failures and scrapes. The window is measured
// against the totals noted at earlier readings (at most one per tenth of the window), the calls
// between two notes taken as spread evenly between them; it is exact when readings are at least a
// tenth of the window apart and the traffic steady. Counts are approximate under contention (two
// threads sharing a stripe may lose an increment, retries decided at the same instant may
// overspend by one each): a budget is a rate, not a ledger.
#ifndef MEND_CORE_RETRY_BUDGET_H_
#define MEND_CORE_RETRY_BUDGET_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/thread_annotations.h"

namespace mend {

// What a retry costs, by the failure it answers (above).
enum class RetryCost : std::uint8_t { other_replica, plain, overload };

struct RetryBudgetOptions {
  double ratio = 0.5;                  // cost allowed per request in the window
  double min_retries_per_second = 10;  // cost allowed per second of the window, whatever the load
  Duration window = std::chrono::seconds(10);
  double other_replica_cost = 0.5;
  double plain_cost = 1;
  double overload_cost = 5;
  // Every retry costs overload_cost once this share of the window's calls fail (and it holds at
  // least overload_minimum_calls calls).
  double overload_failure_share = 0.5;
  int overload_minimum_calls = 10;
  int min_retries_in_flight = 0;  // Envoy-style floor; 0: off
};

class RetryBudget {
 public:
  // The window's figures, for metrics and operators.
  struct Reading {
    std::uint64_t calls = 0;        // attempts that answered or failed
    std::uint64_t failures = 0;     // of them, failed
    std::uint64_t retry_calls = 0;  // of them, retries (and hedges): calls, not requests
    std::uint64_t retries = 0;      // retries the budget allowed (some may still be waiting)
    double spent = 0;               // their cost
    double allowance = 0;           // what the window allows: ratio * requests + the floor
    std::uint64_t requests() const noexcept {
      return calls > retry_calls ? calls - retry_calls : 0;
    }
    // Per attempt, and per request (a request answered after retries is one success); 1 when
    // the window is empty.
    double actual_success() const noexcept;
    double effective_success() const noexcept;
  };

  // Throws std::invalid_argument when an option is out of range (the message names it).
  explicit RetryBudget(RetryBudgetOptions options = {});
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // An attempt answered / failed (a failure of the agent, not a local refusal). No clock: a call
  // is counted in a total of the calling thread's stripe, and the window is read off the totals
  // (below).
  // `retry`: the call was a retry (or a hedge) of a request, not its first call.
  void record_success(bool retry = false) noexcept;
  void record_failure(bool retry = false) noexcept;

  // The kind of a retry after `error` (classified); `other_replica`: the retry can go to a replica
  // of the agent the request has not failed on.
  static RetryCost cost_of(const Error& error, bool other_replica) noexcept;
  // Asks to make one retry of that kind. On true, the caller must call release_retry() once that
  // retry has finished (what the in-flight floor counts).
  bool try_acquire_retry(RetryCost cost, TimePoint now) noexcept;
  void release_retry() noexcept;

  // Whether the window's calls mostly fail (overload_failure_share of at least
  // overload_minimum_calls): then every retry costs overload_cost.
  bool overloaded(TimePoint now) const noexcept { return overloaded(reading(now)); }
  // The window ending at `now`. Also notes the totals at `now` (at most once per tenth of the
  // window), which later readings measure the window against.
  Reading reading(TimePoint now) const noexcept MEND_EXCLUDES(mu_);
  int retries_in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  const RetryBudgetOptions& options() const noexcept { return options_; }

 private:
  static constexpr int kBuckets = 10;
  static constexpr int kStripes = 8;
  // One bucket of retries: its number (time / bucket width; -1: unused) and what it counts.
  struct Bucket {
    std::atomic<std::int64_t> number{-1};
    std::atomic<std::uint32_t> retries{0};
    std::atomic<std::uint32_t> spent_milli{0};  // their cost, in thousandths
  };
  // A stripe: one thread's (mostly) calls and failures since the budget was made, on a line of
  // its own.
  struct alignas(64) Stripe {
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> retry_calls{0};
  };
  // The totals at an instant: the window's calls are the totals now less the totals at its start,
  // found between the two notes around it (linearly: calls between two notes are taken as
  // spread evenly).
  struct Note {
    TimePoint at{};
    std::uint64_t calls = 0;
    std::uint64_t failures = 0;
    std::uint64_t retry_calls = 0;
  };
  static constexpr int kNotes = kBuckets + 2;  // a tenth of the window apart: one is before it

  std::int64_t bucket_number(TimePoint now) const noexcept;
  Stripe& stripe() noexcept;
  // The bucket of number n in `buckets`, emptied first when it held an older one.
  static Bucket& bucket_for(std::array<Bucket, kBuckets>& buckets, std::int64_t n) noexcept;
  double cost_milli(RetryCost cost) const noexcept;
  bool overloaded(const Reading& r) const noexcept;
  Reading read_locked(TimePoint now) const MEND_REQUIRES(mu_);

  RetryBudgetOptions options_;
  std::int64_t bucket_ns_;
  std::array<Stripe, kStripes> stripes_;
  alignas(64) std::array<Bucket, kBuckets> retries_;
  std::atomic<int> in_flight_{0};
  mutable Mutex mu_;
  // The notes, oldest first; none before the first reading (until then, every call counted is
  // in the window).
  mutable std::array<Note, kNotes> notes_ MEND_GUARDED_BY(mu_);
  mutable int note_count_ MEND_GUARDED_BY(mu_) = 0;
};

}  // namespace mend

#endif  // MEND_CORE_RETRY_BUDGET_H_
