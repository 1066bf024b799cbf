// File: mend/core/probe_counter.h
//
// One probe's settings (Kubernetes': period, timeout, failure and success thresholds, initial
// delay), its outcomes in a row counted against its thresholds, and when it is due next. The one
// piece of threshold counting and probe scheduling in mend: `HealthTracker` (mend/core/health.h,
// an agent's health for programs that link mend) and `ReplicaProbes`
// (mend/core/replica_probes.h, `mend serve`'s startup, readiness and liveness probes) are built
// on it, and add only what their states mean.
//
// A success resets the failures in a row and a failure the successes, as Kubernetes counts them;
// each count saturates, so that a probe failing for years cannot overflow it. What reaching a
// threshold does is the owner's business: the counter only says that it is reached.
//
// When the next probe is due is the owner's choice too, made explicit: `take_due()` schedules
// the next one a period after it is sent (ReplicaProbes), `schedule_next()` a period after the
// result came (HealthTracker), `schedule_at()` at any time (the startup probe's quick retries).
//
//   mend::ProbeCounter probe(options, clock.now());  // first due after options.initial_delay
//   if (probe.take_due(clock.now())) {                // due: the next is a period later
//     probe.record(probe_agent());                   // runtime code: true when it passed
//     if (probe.failure_threshold_reached()) take_out_of_traffic();
//   }
//
// The counter does no I/O, reads no clock and does not validate its options (a threshold below 1
// counts as reached at once): owners check them once with validate_probe_options(), as
// HealthTracker does, or where they are read, as `mend serve`'s configuration does.
//
// Thread-safety: none; ProbeCounter and ProbeOptions are values, and the owner serialises
// (HealthTracker under its mutex, ReplicaProbes under the daemon's replicas' lock).
#ifndef MEND_CORE_PROBE_COUNTER_H_
#define MEND_CORE_PROBE_COUNTER_H_

#include <chrono>

#include "mend/core/clock.h"

namespace mend {

struct ProbeOptions {
  Duration period = std::chrono::seconds(10);        // k8s periodSeconds: 10
  Duration timeout = std::chrono::seconds(1);        // k8s timeoutSeconds: 1 (the runtime's)
  int failure_threshold = 3;                         // k8s failureThreshold: 3
  int success_threshold = 1;                         // k8s successThreshold: 1
  Duration initial_delay = std::chrono::seconds(0);  // k8s initialDelaySeconds: 0
};

// Throws std::invalid_argument naming the field when an option is out of range: period and
// timeout must be positive, the thresholds at least 1, initial_delay not negative.
void validate_probe_options(const ProbeOptions& options);

class ProbeCounter {
 public:
  // Nothing counted yet; the first probe is due at start + options.initial_delay.
  explicit ProbeCounter(ProbeOptions options = {}, TimePoint start = {}) noexcept
      : options_(options), next_probe_at_(start + options.initial_delay) {}

  // Counts one probe's outcome: a success (`ok`) or a failure in a row, resetting the other.
  void record(bool ok) noexcept;
  // Forgets the outcomes counted so far (the schedule stays): a fresh start for the thresholds.
  void reset_counts() noexcept { failures_ = successes_ = 0; }

  int failures() const noexcept { return failures_; }    // in a row, up to now
  int successes() const noexcept { return successes_; }  // in a row, up to now
  bool failure_threshold_reached() const noexcept {
    return failures_ >= options_.failure_threshold;
  }
  bool success_threshold_reached() const noexcept {
    return successes_ >= options_.success_threshold;
  }

  bool due(TimePoint now) const noexcept { return now >= next_probe_at_; }
  TimePoint next_probe_at() const noexcept { return next_probe_at_; }
  // When due at `now`, schedules the next probe a period later and returns true; else false.
  bool take_due(TimePoint now) noexcept;
  // The next probe is due a period after `now`.
  void schedule_next(TimePoint now) noexcept { next_probe_at_ = now + options_.period; }
  // The next probe is due at `at`, whatever the period.
  void schedule_at(TimePoint at) noexcept { next_probe_at_ = at; }

  const ProbeOptions& options() const noexcept { return options_; }
  // New settings (a reload): the counts and the schedule stay; they apply from the next outcome
  // and the next scheduling.
  void reconfigure(const ProbeOptions& options) noexcept { options_ = options; }

 private:
  ProbeOptions options_;
  int failures_ = 0;
  int successes_ = 0;
  TimePoint next_probe_at_;
};

}  // namespace mend

#endif  // MEND_CORE_PROBE_COUNTER_H_
