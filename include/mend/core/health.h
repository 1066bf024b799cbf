// File: mend/core/health.h
//
// An agent's health as mend sees it, from periodic probes (GET /health), with Kubernetes'
// probe settings and defaults: a probe every 10 s, 1 s to answer, 3 failures in a row to call
// the agent unhealthy, 1 success to call it well again.
//
// A probe fails when the agent did not answer (no connection, an error, a timeout) or answered
// that it is unhealthy. It succeeds when the agent answered healthy or degraded; an answer with
// no recognizable status counts as healthy, as any 2xx passes a Kubernetes HTTP probe.
//
//   failure, failures in a row < failure_threshold   healthy -> degraded (the agent is flaky);
//                                                      unknown, degraded, unhealthy stay
//   failure, failures in a row >= failure_threshold  -> unhealthy
//   success, successes in a row >= success_threshold -> what the agent reports (healthy or
//                                                      degraded)
//   success, fewer                                   the state stays
//
// The counting in a row and the schedule are a ProbeCounter's (mend/core/probe_counter.h, which
// also defines ProbeOptions), the same that `mend serve`'s replica probes use: the tracker adds
// only the states above.
//
// The tracker does no I/O and reads no clock: the runtime probes (enforcing `timeout`), hands
// the result and the time to record(), and asks probe_due() or next_probe_at() when to probe
// again: `period` after the last probe, and `initial_delay` after `start` for the first.
//
//   mend::HealthTracker tracker(mend::ProbeOptions{}, clock.now());
//   if (tracker.probe_due(clock.now())) {
//     mend::ProbeResult r = probe_agent();               // runtime code
//     if (tracker.record(r, clock.now()) == mend::HealthState::unhealthy) fail_over();
//   }
//
// Thread-safety: HealthTracker is safe from many threads (one mutex, which also guards its
// ProbeCounter, a value with no locking of its own). ProbeOptions and ProbeResult are values.
#ifndef MEND_CORE_HEALTH_H_
#define MEND_CORE_HEALTH_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "mend/core/clock.h"
#include "mend/core/probe_counter.h"
#include "mend/core/thread_annotations.h"

namespace mend {

// unknown: not probed yet, or not enough probes to say.
enum class HealthState : std::uint8_t { unknown, healthy, degraded, unhealthy };
std::string_view to_string(HealthState state) noexcept;
// "unknown", "healthy", "degraded", "unhealthy"; nullopt for anything else.
std::optional<HealthState> parse_health_state(std::string_view name) noexcept;

struct ProbeResult {
  bool answered = false;                        // false: no answer, an error or a timeout
  HealthState reported = HealthState::unknown;  // the agent's own /health status
  std::string detail;                           // why it failed, or the agent's words
  std::map<std::string, double> metrics;        // e.g. memory_percent, pool_in_use
};

// What one probe says: unhealthy when not answered, the reported state otherwise, and healthy
// for an answer without a status.
HealthState observed_health(const ProbeResult& result) noexcept;
// Whether the probe counts as a success: answered, and not reported unhealthy.
inline bool probe_succeeded(const ProbeResult& result) noexcept {
  return observed_health(result) != HealthState::unhealthy;
}

class HealthTracker {
 public:
  // Throws std::invalid_argument naming the field when an option is out of range: period and
  // timeout must be positive, the thresholds at least 1, initial_delay not negative.
  explicit HealthTracker(ProbeOptions options = {}, TimePoint start = {});

  // Records one probe made at `now` and returns the new state.
  HealthState record(const ProbeResult& result, TimePoint now);

  HealthState state() const;
  int consecutive_failures() const;
  int consecutive_successes() const;
  bool probe_due(TimePoint now) const;
  TimePoint next_probe_at() const;
  ProbeResult last_result() const;  // a default ProbeResult before the first probe
  const ProbeOptions& options() const noexcept { return options_; }

 private:
  const ProbeOptions options_;  // the counter's, readable without the lock: they never change
  mutable Mutex mu_;
  HealthState state_ MEND_GUARDED_BY(mu_) = HealthState::unknown;
  ProbeCounter counter_ MEND_GUARDED_BY(mu_);
  ProbeResult last_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend

#endif  // MEND_CORE_HEALTH_H_
