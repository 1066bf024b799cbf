#include "mend/core/replica_probes.h"

#include <algorithm>

namespace mend {
namespace {

// The first quick retry of a startup probe that failed; each next one waits twice as long.
constexpr Duration kFirstQuickRetry = std::chrono::milliseconds(100);

}  // namespace

ReplicaProbes::ReplicaProbes(ProbeSet probes, bool supervised)
    : probes_(probes), supervised_(supervised) {
  if (!supervised_) {
    // mend does not start it: it serves until a probe says otherwise.
    started_ = true;
    ready_ = true;
  }
}

void ReplicaProbes::started(TimePoint now) {
  started_ = false;
  ready_ = false;
  startup_failures_ = 0;
  startup_quick_tries_ = 0;
  readiness_failures_ = 0;
  readiness_successes_ = 0;
  liveness_failures_ = 0;
  next_probe_ = now + probes_.startup.initial_delay;
}

void ReplicaProbes::exited() {
  started_ = false;
  ready_ = false;
}

std::optional<ProbeKind> ReplicaProbes::take_due(TimePoint now) {
  if (now >= next_probe_) {
    const ProbeOptions& p = started_ ? probes_.readiness : probes_.startup;
    next_probe_ = now + p.period;
    return started_ ? ProbeKind::readiness : ProbeKind::startup;
  }
  if (started_ && supervised_ && now >= next_liveness_) {
    next_liveness_ = now + probes_.liveness.period;
    return ProbeKind::liveness;
  }
  return std::nullopt;
}

Duration ReplicaProbes::timeout(ProbeKind kind) const {
  switch (kind) {
    case ProbeKind::startup:
      return probes_.startup.timeout;
    case ProbeKind::readiness:
      return probes_.readiness.timeout;
    case ProbeKind::liveness:
      return probes_.liveness.timeout;
  }
  return probes_.readiness.timeout;
}

ProbeVerdict ReplicaProbes::record(ProbeKind kind, bool ok, TimePoint now) {
  if (kind == ProbeKind::liveness) return record_liveness(ok);
  // A startup or readiness probe is judged by where the replica is now, not when it was sent.
  return started_ ? record_readiness(ok) : record_startup(ok, now);
}

ProbeVerdict ReplicaProbes::record_startup(bool ok, TimePoint now) {
  if (ok) {
    started_ = true;
    ready_ = true;
    readiness_failures_ = 0;
    next_probe_ = now + probes_.readiness.period;  // readiness takes over, at its own period
    next_liveness_ = now + probes_.liveness.period;
    return {ProbeVerdict::Change::ready, 0};
  }
  const Duration quick = std::min<Duration>(
      probes_.startup.period, kFirstQuickRetry * (1 << std::min(startup_quick_tries_++, 8)));
  next_probe_ = std::min(next_probe_, now + quick);
  if (startup_failures_ == 0 || now - startup_counted_at_ >= probes_.startup.period) {
    ++startup_failures_;
    startup_counted_at_ = now;
  }
  if (startup_failures_ >= probes_.startup.failure_threshold && supervised_) {
    return {ProbeVerdict::Change::restart, startup_failures_};
  }
  return {};
}

ProbeVerdict ReplicaProbes::record_readiness(bool ok) {
  if (ok) {
    readiness_failures_ = 0;
    if (!ready_ && ++readiness_successes_ >= probes_.readiness.success_threshold) {
      ready_ = true;
      return {ProbeVerdict::Change::ready, 0};
    }
    return {};
  }
  readiness_successes_ = 0;
  if (ready_ && ++readiness_failures_ >= probes_.readiness.failure_threshold) {
    ready_ = false;
    return {ProbeVerdict::Change::not_ready, readiness_failures_};
  }
  return {};
}

ProbeVerdict ReplicaProbes::record_liveness(bool ok) {
  liveness_failures_ = ok ? 0 : liveness_failures_ + 1;
  if (liveness_failures_ >= probes_.liveness.failure_threshold && supervised_) {
    ready_ = false;
    return {ProbeVerdict::Change::restart, liveness_failures_};
  }
  return {};
}

}  // namespace mend
