#include "mend/core/replica_probes.h"

#include <algorithm>

namespace mend {
namespace {

// The first quick retry of a startup probe that failed; each next one waits twice as long.
constexpr Duration kFirstQuickRetry = std::chrono::milliseconds(100);

}  // namespace

ReplicaProbes::ReplicaProbes(ProbeSet probes, bool supervised)
    : probes_(probes),
      supervised_(supervised),
      startup_(probes.startup),
      readiness_(probes.readiness),
      liveness_(probes.liveness) {
  if (!supervised_) {
    // mend does not start it: it serves until a probe says otherwise, and is probed at once.
    started_ = true;
    ready_ = true;
    readiness_.schedule_at(TimePoint{});
  }
}

void ReplicaProbes::started(TimePoint now) {
  started_ = false;
  ready_ = false;
  startup_ = ProbeCounter(probes_.startup, now);  // due after its initial_delay
  readiness_ = ProbeCounter(probes_.readiness);   // scheduled when startup passes
  liveness_ = ProbeCounter(probes_.liveness);
  startup_quick_tries_ = 0;
}

void ReplicaProbes::exited() {
  started_ = false;
  ready_ = false;
}

void ReplicaProbes::reconfigure(const ProbeSet& probes) {
  probes_ = probes;
  startup_.reconfigure(probes.startup);
  readiness_.reconfigure(probes.readiness);
  liveness_.reconfigure(probes.liveness);
}

std::optional<ProbeKind> ReplicaProbes::take_due(TimePoint now) {
  if (!started_) {
    if (startup_.take_due(now)) return ProbeKind::startup;
    return std::nullopt;
  }
  if (readiness_.take_due(now)) return ProbeKind::readiness;
  if (supervised_ && liveness_.take_due(now)) return ProbeKind::liveness;
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
    readiness_.reset_counts();      // its thresholds count from its own first probe
    readiness_.schedule_next(now);  // readiness takes over, at its own period
    liveness_.schedule_next(now);
    return {ProbeVerdict::Change::ready, 0};
  }
  const Duration quick = std::min<Duration>(
      probes_.startup.period, kFirstQuickRetry * (1 << std::min(startup_quick_tries_++, 8)));
  startup_.schedule_at(std::min(startup_.next_probe_at(), now + quick));
  // Quick retries are not counted: failure_threshold x period stays the time it has to start.
  if (startup_.failures() == 0 || now - startup_counted_at_ >= probes_.startup.period) {
    startup_.record(false);
    startup_counted_at_ = now;
  }
  if (startup_.failure_threshold_reached() && supervised_) {
    return {ProbeVerdict::Change::restart, startup_.failures()};
  }
  return {};
}

ProbeVerdict ReplicaProbes::record_readiness(bool ok) {
  readiness_.record(ok);
  if (ok) {
    if (!ready_ && readiness_.success_threshold_reached()) {
      ready_ = true;
      return {ProbeVerdict::Change::ready, 0};
    }
    return {};
  }
  if (ready_ && readiness_.failure_threshold_reached()) {
    ready_ = false;
    return {ProbeVerdict::Change::not_ready, readiness_.failures()};
  }
  return {};
}

ProbeVerdict ReplicaProbes::record_liveness(bool ok) {
  liveness_.record(ok);
  if (liveness_.failure_threshold_reached() && supervised_) {
    ready_ = false;
    return {ProbeVerdict::Change::restart, liveness_.failures()};
  }
  return {};
}

}  // namespace mend
