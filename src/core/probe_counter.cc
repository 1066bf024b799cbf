#include "mend/core/probe_counter.h"

#include <limits>
#include <stdexcept>

namespace mend {
namespace {

// Counts in a row, saturating: an agent down for years must not overflow the counter.
void bump(int& count) noexcept {
  if (count < std::numeric_limits<int>::max()) ++count;
}

}  // namespace

void validate_probe_options(const ProbeOptions& o) {
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
}

void ProbeCounter::record(bool ok) noexcept {
  bump(ok ? successes_ : failures_);
  (ok ? failures_ : successes_) = 0;
}

bool ProbeCounter::take_due(TimePoint now) noexcept {
  if (!due(now)) return false;
  schedule_next(now);
  return true;
}

}  // namespace mend
