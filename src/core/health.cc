#include "mend/core/health.h"

namespace mend {
namespace {

const ProbeOptions& validated(const ProbeOptions& options) {
  validate_probe_options(options);
  return options;
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
    : options_(validated(options)), counter_(options, start) {}

HealthState HealthTracker::record(const ProbeResult& result, TimePoint now) {
  const HealthState observed = observed_health(result);
  MutexLock lock(mu_);
  counter_.record(observed != HealthState::unhealthy);
  if (observed == HealthState::unhealthy) {
    if (counter_.failure_threshold_reached()) {
      state_ = HealthState::unhealthy;
    } else if (state_ == HealthState::healthy) {
      state_ = HealthState::degraded;  // flaky, not yet down
    }
  } else if (counter_.success_threshold_reached()) {
    state_ = observed;
  }
  counter_.schedule_next(now);  // a period after this probe, failed or not
  last_ = result;
  return state_;
}

HealthState HealthTracker::state() const {
  MutexLock lock(mu_);
  return state_;
}
int HealthTracker::consecutive_failures() const {
  MutexLock lock(mu_);
  return counter_.failures();
}
int HealthTracker::consecutive_successes() const {
  MutexLock lock(mu_);
  return counter_.successes();
}
bool HealthTracker::probe_due(TimePoint now) const {
  MutexLock lock(mu_);
  return counter_.due(now);
}
TimePoint HealthTracker::next_probe_at() const {
  MutexLock lock(mu_);
  return counter_.next_probe_at();
}
ProbeResult HealthTracker::last_result() const {
  MutexLock lock(mu_);
  return last_;
}

}  // namespace mend
