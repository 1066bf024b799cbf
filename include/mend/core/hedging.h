// File: mend/core/hedging.h
//
// Hedged requests (Dean and Barroso's "The Tail at Scale"; Envoy's and Polly's hedging): when a
// call to one of an agent's replicas has not answered after a delay, the same request goes to
// another replica, the first answer wins and the other call is cancelled. One slow replica (a
// GC pause, a noisy neighbour, a replica about to fail) then costs its callers the delay, not its
// whole latency. It is opt-in, per agent, for the task types that are safe to run twice
// (idempotent): the agent may well do the work twice.
//
//   mend::HedgingOptions options;
//   options.task_types = {"code_review"};     // idempotent ones only
//   mend::HedgingPolicy hedging(options);     // delay: the agent's observed p95
//   if (hedging.hedges(task.type)) {
//     const mend::Duration delay = hedging.delay(clock.now());
//     // ... call one replica; no answer after `delay`: the same task to another replica (when the
//     // retry budget allows it: a hedge is an extra call), first answer wins, cancel the other.
//   }
//   hedging.record(latency, clock.now());    // every call that answered, hedged or not
//
// The delay (HedgingOptions::delay): a fixed one, or (nullopt, the default) the agent's observed
// 95th percentile of answered calls over the last `window` (60 s), at least min_delay (10 ms). A
// p95 delay hedges about one call in twenty on a healthy agent (5 % more load, Dean and
// Barroso's figure) and every call a stuck replica takes. Until the window holds `min_samples`
// (20) answers the percentile is not trusted (of fewer than 20 samples the 95th is the largest)
// and the delay is max_delay (2 s, Polly's default hedging delay): a stuck call is still rescued,
// a healthy one is not hedged on no evidence. min_delay keeps a fast agent's jitter from doubling
// its load. A trusted percentile above max_delay means no hedge (delay() is nullopt): the answers
// are what the agent's calls that were not cancelled took, so when they are that slow the agent
// as a whole is slow (an overload, where a second call only adds load), not one replica.
//
// Which requests: those whose task type is in task_types; "*" there hedges every request (an
// agent all of whose requests are idempotent). Empty (the default): none. Hedging is never on by
// default: sending a task twice is the caller's decision to make.
//
// The estimator (LatencyQuantile) keeps counts in 96 log-spaced buckets (each 20 % wider than the
// one before, from 100 us up to about 45 min), in two halves of the window that take turns: a
// quantile reads both, so it covers between half the window and the whole of it. It answers the
// upper bound of the bucket the quantile falls in: at most 20 % above the true value, never
// below.
//
// Who hedges: the relay of `mend serve` (docs/relay.md, "Hedging") and the workflow's call steps
// (AgentInfo::hedging, WorkflowStep::hedge_after in mend/core/workflow.h), whose async driver
// makes the two calls (mend/runtime/async_workflow.h).
//
// Sans-IO: the caller passes the time; nothing here reads a clock, sleeps or starts a thread.
//
// Thread-safety: HedgingPolicy and LatencyQuantile are safe to use from many threads at once (one
// mutex per estimator, held for a few loads and stores by record() and a pass over the buckets by
// quantile()). HedgingOptions is a plain value.
#ifndef MEND_CORE_HEDGING_H_
#define MEND_CORE_HEDGING_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/thread_annotations.h"

namespace mend {

struct HedgingOptions {
  // The wait before the hedge: a fixed one (used as it is), or nullopt: the agent's observed
  // `quantile` (the p95), at least min_delay; above max_delay, no hedge.
  std::optional<Duration> delay;
  double quantile = 0.95;
  Duration min_delay = std::chrono::milliseconds(10);
  // The delay until the quantile is trusted; a trusted quantile above it: no hedge (above).
  Duration max_delay = std::chrono::seconds(2);
  // The task types hedged (idempotent ones); "*": every request. Empty: none.
  std::vector<std::string> task_types;
  // The quantile's history, and the answers it must hold before it is trusted.
  Duration window = std::chrono::seconds(60);
  int min_samples = 20;
};

// A latency quantile over a sliding window, from log-spaced buckets (above).
class LatencyQuantile {
 public:
  static constexpr int kBuckets = 96;
  // Throws std::invalid_argument when window <= 0 or min_samples < 1.
  LatencyQuantile(Duration window, int min_samples);
  LatencyQuantile(const LatencyQuantile&) = delete;
  LatencyQuantile& operator=(const LatencyQuantile&) = delete;

  void record(Duration latency, TimePoint now) MEND_EXCLUDES(mu_);
  // The q-quantile (0 < q < 1) of the window's samples; nullopt while it holds fewer than
  // min_samples.
  std::optional<Duration> quantile(double q, TimePoint now) const MEND_EXCLUDES(mu_);
  // The samples the window holds now.
  std::uint64_t samples(TimePoint now) const MEND_EXCLUDES(mu_);

  // Bucket i holds latencies up to upper_bound(i) (the last one, everything above).
  static Duration upper_bound(int bucket) noexcept;
  static int bucket_of(Duration latency) noexcept;

 private:
  using Counts = std::array<std::uint32_t, kBuckets>;
  // Moves the halves on to `now`: the current half becomes the previous one, or both empty.
  void rotate(TimePoint now) const MEND_REQUIRES(mu_);

  const Duration half_;
  const int min_samples_;
  mutable Mutex mu_;
  mutable Counts current_ MEND_GUARDED_BY(mu_){};
  mutable Counts previous_ MEND_GUARDED_BY(mu_){};
  mutable std::uint64_t current_total_ MEND_GUARDED_BY(mu_) = 0;
  mutable std::uint64_t previous_total_ MEND_GUARDED_BY(mu_) = 0;
  mutable std::optional<TimePoint> current_start_ MEND_GUARDED_BY(mu_);
};

// One agent's hedging: which requests, and how long to wait before the hedge.
class HedgingPolicy {
 public:
  // Throws std::invalid_argument when an option is out of range (the message names it).
  explicit HedgingPolicy(HedgingOptions options);

  const HedgingOptions& options() const noexcept { return options_; }
  // Whether a request of this task type is hedged ("" for a request without one: only "*").
  bool hedges(std::string_view task_type) const noexcept;
  // The wait before the hedge of a call that starts now; nullopt: no hedge (above).
  std::optional<Duration> delay(TimePoint now) const;
  // A call that answered (not one that failed, nor one cancelled): the quantile's sample. Does
  // nothing for a fixed delay.
  void record(Duration latency, TimePoint now);
  const LatencyQuantile& latencies() const noexcept { return latencies_; }

 private:
  HedgingOptions options_;
  LatencyQuantile latencies_;
};

}  // namespace mend

#endif  // MEND_CORE_HEDGING_H_
