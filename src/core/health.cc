#include "mend/core/health.h"

#include <limits>
#include <stdexcept>

namespace mend {
namespace {

const ProbeOptions& validated(const ProbeOptions& o) {
  if (o.period <= Duration::zero()) {
    throw std::invalid_argument("ProbeOptions.period must be positive");
  }
  if (o.timeout <= Duration::zero()) {
    throw std::invalid_argument("ProbeOptions.timeout must be positive");
  }
  if (o.failure_threshold < 1) {
    throw std::invalid_argument("ProbeOptions.failure_threshold must be at least 1");
  }
  if (o.success_threshold < 1) {
    throw std::invalid_argument("ProbeOptions.success_threshold must be at least 1");
  }
  if (o.initial_delay < Duration::zero()) {
    throw std::invalid_argument("ProbeOptions.initial_delay must not be negative");
  }
  return o;
}

// Counts in a row, saturating: an agent down for years must not overflow the counter.
void bump(int& count) {
  if (count < std::numeric_limits<int>::max()) ++count;
}

}  // namespace

std::string_view to_string(HealthState state) noexcept {
  switch (state) {
    case HealthState::unknown:
      return "unknown";
    case HealthState::healthy:
      return "healthy";
    case HealthState::degraded:
      return "degraded";
    case HealthState::unhealthy:
      return "unhealthy";
  }
  return "unknown";
}

std::optional<HealthState> parse_health_state(std::string_view name) noexcept {
  for (HealthState s : {HealthState::unknown, HealthState::healthy, HealthState::degraded,
                        HealthState::unhealthy}) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

HealthState observed_health(const ProbeResult& result) noexcept {
  if (!result.answered) return HealthState::unhealthy;
  if (result.reported == HealthState::unknown) return HealthState::healthy;
  return result.reported;
}

HealthTracker::HealthTracker(ProbeOptions options, TimePoint start)
    : options_(validated(options)), next_probe_at_(start + options.initial_delay) {}

HealthState HealthTracker::record(const ProbeResult& result, TimePoint now) {
  const HealthState observed = observed_health(result);
  MutexLock lock(mu_);
  if (observed == HealthState::unhealthy) {
    bump(failures_);
    successes_ = 0;
    if (failures_ >= options_.failure_threshold) {
      state_ = HealthState::unhealthy;
    } else if (state_ == HealthState::healthy) {
      state_ = HealthState::degraded;  // flaky, not yet down
    }
  } else {
    bump(successes_);
    failures_ = 0;
    if (successes_ >= options_.success_threshold) state_ = observed;
  }
  next_probe_at_ = now + options_.period;
  last_ = result;
  return state_;
}

HealthState HealthTracker::state() const {
  MutexLock lock(mu_);
  return state_;
}
int HealthTracker::consecutive_failures() const {
  MutexLock lock(mu_);
  return failures_;
}
int HealthTracker::consecutive_successes() const {
  MutexLock lock(mu_);
  return successes_;
}
bool HealthTracker::probe_due(TimePoint now) const {
  MutexLock lock(mu_);
  return now >= next_probe_at_;
}
TimePoint HealthTracker::next_probe_at() const {
  MutexLock lock(mu_);
  return next_probe_at_;
}
ProbeResult HealthTracker::last_result() const {
  MutexLock lock(mu_);
  return last_;
}

}  // namespace mend
