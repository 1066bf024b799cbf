// File: mend/core/replica_balancer.h
//
// Which of an agent's replicas takes its next call, and which replicas sit out for a while because
// their own calls keep failing: load balancing and outlier ejection over one agent's replicas
// (AgentInfo::endpoints), as Envoy's LEAST_REQUEST load balancer and outlier detector do it for a
// cluster's hosts. The workflow (mend/core/workflow.h) asks the agent's balancer
// (AgentRegistry::Entry::balancer) for every call's replica and tells it how every call ended.
//
//   mend::ReplicaBalancer balancer(/*replicas=*/2, mend::ReplicaBalancerOptions{});
//   std::vector<int> failed;  // the replicas this task's calls failed on: its retries go elsewhere
//   const int replica = balancer.pick(clock.now(), random, failed);  // now outstanding
//   Result<std::string> r = call(replica);
//   balancer.report(replica, r.ok() ? mend::ReplicaCallResult::succeeded
//                                   : mend::ReplicaBalancer::result_of(r.error()),
//                   clock.now(), latency);
//   if (!r.ok()) failed.push_back(replica);
//
// Picking, by power of two choices (Envoy's LEAST_REQUEST with choice_count 2):
//   - the candidates are the replicas in service (ready and not ejected), less those in `avoid`
//     (the ones the task already tried and that failed, Envoy's previous-hosts retry rule) unless
//     that leaves none: then every replica in service; with none in service, every ready one
//     (ejected or not); with none ready, every replica (Envoy's panic mode: an agent whose probes
//     all fail is its circuit breaker's business, and its calls say more than no call would);
//   - one candidate: that one. Two: both are the choices. More: two distinct ones drawn from the
//     random source (two draws; no draw otherwise, so a one-replica agent's jitter is untouched);
//   - of the two, the one with fewer outstanding calls (picked, not yet reported); on a tie the one
//     that comes first in round-robin order after the last replica picked, so that calls made one
//     after the other (none outstanding) alternate between two replicas, and a fresh two-replica
//     balancer starts at replica 0 (as the workflow did before it balanced).
// Every pick() must be matched by one report() (or abandon()): it is what counts calls outstanding.
//
// Health from probes, per replica: the owner says when a replica's readiness probe takes it out
// of traffic or puts it back (set_ready(); mend serve does it from each replica's probes,
// mend/core/replica_probes.h). A replica that is not ready takes no call while another is in
// service, and does not count towards the ejected share below: its probe, not its traffic, took
// it out. Every replica starts ready.
//
// Outlier ejection, from live traffic, per replica (docs/policies.md, "Replicas: balancing and
// ejection", has the defaults and why):
//   - a failure of the replica is a call whose error is of category transient (but
//     rate_limit_exceeded), resource or system, or that carries a 5xx status (but 501 and 505,
//     the request's own fault; a bare 500 too, as Envoy's consecutive_5xx counts it): the replica
//     could not do the work. An error of category logic (the task's own fault) or external (a
//     service behind the agent, the same for every replica), and a 429, say the replica answered:
//     they count as its successes. A local refusal (AttemptPolicy::refused_locally: the call never
//     left) counts as nothing;
//   - a slow call counts as a failure too: an answer that took at least slow_call_minimum (100 ms)
//     and more than slow_call_factor (5) times the average latency of the agent's other replicas.
//     A replica as slow as its peers is never slow (the agent is; that is its breaker's and
//     timeouts' business), and a one-replica agent has no peers;
//   - consecutive_failures (5) failures in a row, or a failure share of at least
//     failure_rate_threshold (50 %) once its window (60 s) holds failure_rate_minimum_calls (10)
//     calls, eject it for base_ejection_time (30 s) times the number of times it has been
//     ejected, at most max_ejection_time (300 s). The count goes down by one for each
//     base_ejection_time it then spends back in service without being ejected;
//   - at most max_ejection_percent (50 %) of the replicas are ejected at once, at least one once
//     there are two, never all: a one-replica agent is never ejected, and an agent is never
//     emptied by its own detector (its circuit breaker is what stops calls to a dead agent). A
//     replica kept in by that rule starts counting afresh, as Envoy's does;
//   - an ejected replica returns by itself once its time is up, its counts afresh. Results of its
//     calls that were outstanding while it was ejected do not count.
//
// Sans-IO: the caller passes the time and the random source; nothing here reads a clock, sleeps
// or starts a thread.
//
// Thread-safety: all methods are safe to call from many threads at once. One mutex per balancer,
// held for a few loads and stores per call.
#ifndef MEND_CORE_REPLICA_BALANCER_H_
#define MEND_CORE_REPLICA_BALANCER_H_

#include <chrono>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/random.h"
#include "mend/core/thread_annotations.h"

namespace mend {

struct ReplicaBalancerOptions {
  // Failures in a row that eject a replica (Envoy's consecutive_5xx); 0: never on this count.
  int consecutive_failures = 5;
  // Failure-share ejection: once the replica's window holds failure_rate_minimum_calls calls
  // (0: never on the share), a share of failures >= failure_rate_threshold ejects it.
  double failure_rate_threshold = 0.5;
  int failure_rate_minimum_calls = 10;
  // A window starts at the replica's first counted call and lasts this long; the next starts at
  // the first counted call after it (and after an ejection).
  Duration failure_rate_window = std::chrono::seconds(60);
  Duration base_ejection_time = std::chrono::seconds(30);  // Envoy's
  Duration max_ejection_time = std::chrono::seconds(300);  // Envoy's
  // Of the agent's replicas, at most this share is ejected at once: at least one once there are
  // two, never all (Envoy's default is 10 %, but agents have two or three replicas, not dozens).
  int max_ejection_percent = 50;
  // Slow-call ejection: a call slower than slow_call_factor times the others' average latency and
  // than slow_call_minimum counts against its replica. 0: off. The minimum keeps a fast agent's
  // jitter (1 ms against 6 ms) from ejecting anything.
  double slow_call_factor = 5;
  Duration slow_call_minimum = std::chrono::milliseconds(100);
};

// How a call to a replica ended, as far as the replica's health is concerned.
enum class ReplicaCallResult : std::uint8_t {
  succeeded,  // it answered (an error that is not the replica's own counts as an answer)
  failed,     // it failed (ReplicaBalancer::counts_against_replica)
  ignored,    // nothing is known of it: the call never left, or it was abandoned
};

// One replica as the balancer sees it now, for operators and tests.
struct ReplicaSnapshot {
  int outstanding = 0;  // calls picked and not reported yet
  bool ready = true;    // as the owner last said (set_ready)
  bool ejected = false;
  TimePoint ejected_until{};  // when ejected
  // The multiplier of its latest ejection (decayed as above), and its ejections in all.
  int ejection_multiplier = 0;
  std::uint64_t ejections = 0;
  int consecutive_failures = 0;
  int window_calls = 0;
  int window_failures = 0;
  std::uint64_t calls = 0;  // picked, in all
  std::uint64_t failures = 0;
  std::uint64_t slow_calls = 0;  // answers counted as failures for being slow
  Duration average_latency{};    // of reported calls (succeeded or failed), moving average
};

class ReplicaBalancer {
 public:
  // Throws std::invalid_argument when `replicas` < 1 or the options are out of range (the message
  // names the field).
  ReplicaBalancer(int replicas, ReplicaBalancerOptions options);
  ReplicaBalancer(const ReplicaBalancer&) = delete;
  ReplicaBalancer& operator=(const ReplicaBalancer&) = delete;

  int replicas() const noexcept { return replica_count_; }
  const ReplicaBalancerOptions& options() const noexcept { return options_; }
  // How many replicas may be ejected at once (0 for one replica).
  int max_ejected() const noexcept { return max_ejected_; }

  // The replica for the next call, now counted outstanding. `avoid`: replicas to leave out when
  // another is eligible (those the task already failed on). Draws from `random` only when more
  // than two replicas are candidates.
  int pick(TimePoint now, RandomSource& random, std::span<const int> avoid = {}) MEND_EXCLUDES(mu_);
  // The replica's readiness, from its probes (above). Out of range: nothing.
  void set_ready(int replica, bool ready) MEND_EXCLUDES(mu_);
  // Whether a replica in service (ready, not ejected) and not in `tried` exists: where a task may
  // move to.
  bool has_untried(TimePoint now, std::span<const int> tried) const MEND_EXCLUDES(mu_);
  // The end of a call that pick() started: no longer outstanding, and counted (above).
  void report(int replica, ReplicaCallResult result, TimePoint now, Duration latency)
      MEND_EXCLUDES(mu_);
  // The end of a call whose result says nothing about the replica (the caller stopped).
  void abandon(int replica) MEND_EXCLUDES(mu_) {
    report(replica, ReplicaCallResult::ignored, TimePoint{}, Duration{});
  }

  // failed, succeeded or ignored, for a call that ended with `error` (classified).
  static ReplicaCallResult result_of(const Error& error) noexcept;
  // Whether an error of this type says the replica could not do the work (above).
  static bool counts_against_replica(ErrorType type) noexcept;

  std::vector<ReplicaSnapshot> snapshot(TimePoint now) const MEND_EXCLUDES(mu_);

  // Takes up where `before` is, the balancer this one replaces for the same agent (mend serve
  // builds new balancers when an agent's replicas change): replica i here is replica
  // before_index[i] there (-1, or past the span's end: a new replica, which starts afresh).
  // Each replica's readiness, ejection (its time and multiplier), counts, window and latency carry
  // over; its calls outstanding do not (they report to `before`). Call it before this balancer
  // is shared; `before` may be in use meanwhile.
  void continue_from(const ReplicaBalancer& before, std::span<const int> before_index)
      MEND_EXCLUDES(mu_);

 private:
  struct Replica {
    int outstanding = 0;
    TimePoint ejected_until{};  // ejected while now < ejected_until
    int ejection_multiplier = 0;
    std::uint64_t ejections = 0;
    int consecutive_failures = 0;
    bool window_open = false;
    TimePoint window_start{};
    int window_calls = 0;
    int window_failures = 0;
    std::uint64_t calls = 0;
    std::uint64_t failures = 0;
    std::uint64_t slow_calls = 0;
    Duration average_latency{};
    bool latency_known = false;  // a call has been reported (its latency may have been zero)
    bool ready = true;           // its readiness probe's word (set_ready)
    bool ejected(TimePoint now) const noexcept { return now < ejected_until; }
    bool in_service(TimePoint now) const noexcept { return ready && !ejected(now); }
  };

  // Ejects `r` when the share allows it; its counts start afresh either way.
  void try_eject(Replica& r, TimePoint now) MEND_REQUIRES(mu_);
  // Whether a call of `replica` that took `latency` is slow (above).
  bool slow(int replica, Duration latency) const MEND_REQUIRES(mu_);
  // pick()'s candidates, in the order it tries them, and the two it compares among them (-1 for
  // none; the second -1 when there is one candidate).
  enum class Candidates : std::uint8_t { untried, in_service, ready, all };
  bool candidate(int replica, Candidates which, TimePoint now, std::span<const int> avoid) const
      MEND_REQUIRES(mu_);
  std::pair<int, int> choose_two(Candidates which, TimePoint now, std::span<const int> avoid,
                                 RandomSource& random) const MEND_REQUIRES(mu_);

  const int replica_count_;
  const ReplicaBalancerOptions options_;
  const int max_ejected_;
  mutable Mutex mu_;
  std::vector<Replica> replicas_ MEND_GUARDED_BY(mu_);
  int next_in_turn_ MEND_GUARDED_BY(mu_) = 0;  // ties go to the first at or after it
};

}  // namespace mend

#endif  // MEND_CORE_REPLICA_BALANCER_H_
