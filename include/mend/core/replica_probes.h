// File: mend/core/replica_probes.h
//
// One replica's three probes, as Kubernetes has them, decided without I/O: the startup probe
// until the replica first answers, then readiness (may it take traffic?) and, for a replica mend
// started itself, liveness (must it be restarted?). `mend serve` keeps one per replica; the
// runtime makes the probes (GET /health, within the probe's timeout) and hands each result here.
//
//   mend::ReplicaProbes probes(set, /*supervised=*/true);
//   probes.started(clock.now());                       // its process (re)started
//   if (auto kind = probes.take_due(clock.now())) {    // which probe to make now, if any
//     bool ok = probe(probes.timeout(*kind));          // runtime code
//     mend::ProbeVerdict v = probes.record(*kind, ok, clock.now());
//     if (v.change == mend::ProbeVerdict::Change::restart) restart();
//   }
//
// The rules:
// - startup: probed every `startup.period`, but until the replica first answers, again soon
//   after each failure (100 ms, doubling, up to the period), so that a replica not yet listening
//   at the first probe is not left unready for a whole period. Failures count once per period,
//   so that failure_threshold x period stays the time it is given to start; at the threshold a
//   supervised replica is restarted. The first success makes it started and ready.
// - readiness: a ready replica that fails failure_threshold probes in a row is taken out of
//   traffic; an unready one that passes success_threshold in a row is put back.
// - liveness (supervised replicas, once started): failure_threshold failures in a row restart it.
// - a replica mend does not start (a URL agent) is assumed started and ready until a probe says
//   otherwise, and never restarted.
//
// Each probe's failures and successes in a row, its thresholds and its schedule are a
// ProbeCounter's (mend/core/probe_counter.h), the same that HealthTracker counts with: this class
// adds only the three probes' rules above. Startup and readiness are never due together:
// readiness is first scheduled when startup passes, a readiness period later.
//
// Thread-safety: none; the owner serialises (the daemon holds its replicas' lock).
#ifndef MEND_CORE_REPLICA_PROBES_H_
#define MEND_CORE_REPLICA_PROBES_H_

#include <chrono>
#include <cstdint>
#include <optional>

#include "mend/core/clock.h"
#include "mend/core/health.h"
#include "mend/core/probe_counter.h"

namespace mend {

// The three probes' settings (Kubernetes' defaults, and a startup probe that allows 5 minutes).
struct ProbeSet {
  ProbeOptions startup{.period = std::chrono::seconds(10), .failure_threshold = 30};
  ProbeOptions readiness;
  ProbeOptions liveness;
};

enum class ProbeKind : std::uint8_t { startup, readiness, liveness };

// What one probe's result changed.
struct ProbeVerdict {
  enum class Change : std::uint8_t {
    none,
    ready,      // takes traffic (again)
    not_ready,  // taken out of traffic
    restart,    // restart its process (startup or liveness threshold reached)
  };
  Change change = Change::none;
  int failures = 0;  // the failures counted towards the threshold that was reached
};

class ReplicaProbes {
 public:
  explicit ReplicaProbes(ProbeSet probes = {}, bool supervised = true);

  // Its process (re)started at `now`: every count resets; the first startup probe is due after
  // startup.initial_delay.
  void started(TimePoint now);
  // Its process exited: neither started nor ready until the next start.
  void exited();
  // Taken out of traffic from outside (mend is restarting it).
  void take_out() { ready_ = false; }
  // New settings (a reload); the replica's state, counts and schedules stay.
  void reconfigure(const ProbeSet& probes);

  // Which probe to make at `now`, if one is due; it is then scheduled again after its period.
  // Startup or readiness first; liveness for a started, supervised replica.
  std::optional<ProbeKind> take_due(TimePoint now);
  // The probe's timeout.
  Duration timeout(ProbeKind kind) const;
  // Records the result of a probe of `kind` made at `now`.
  ProbeVerdict record(ProbeKind kind, bool ok, TimePoint now);

  bool is_started() const noexcept { return started_; }
  bool is_ready() const noexcept { return ready_; }
  bool supervised() const noexcept { return supervised_; }
  const ProbeSet& probes() const noexcept { return probes_; }

 private:
  ProbeVerdict record_startup(bool ok, TimePoint now);
  ProbeVerdict record_readiness(bool ok);
  ProbeVerdict record_liveness(bool ok);

  ProbeSet probes_;  // what probes() returns; the counters hold a copy each
  bool supervised_ = true;
  bool started_ = false;  // the startup probe passed since the process last started
  bool ready_ = false;
  ProbeCounter startup_;
  ProbeCounter readiness_;
  ProbeCounter liveness_;
  int startup_quick_tries_ = 0;     // startup probes since the start (their quick retries)
  TimePoint startup_counted_at_{};  // when a startup failure was last counted
};

}  // namespace mend

#endif  // MEND_CORE_REPLICA_PROBES_H_
