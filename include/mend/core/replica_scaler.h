// File: mend/core/replica_scaler.h
//
// How many replicas of a supervised agent should run: the specification's step for resource
// failures ("Resource Recovery: Scale Resources, Health Recheck"). An agent configured with
// `replicas: {min, max}` starts with `min`; when its replicas are saturated (calls refused for
// want of capacity, connection_pool_exhausted errors, latency over its threshold, every replica
// at its capacity) mend starts one more, up to `max`; when the load has been low for a while it
// retires one, down to `min`. The scaler decides; whoever owns the processes (mend serve's
// replica set, src/server/daemon_replicas.cc) starts and stops them and tells it what happened.
//
//   mend::ReplicaScalerOptions options{.min_replicas = 1, .max_replicas = 4};
//   mend::ReplicaScaler scaler(options, /*replicas=*/1);
//   // Every second or so, with what happened since the last observation:
//   mend::ScalingDecision d = scaler.observe({.in_flight = 7, .rejected = 3}, clock.now());
//   if (d.report) publish_event(d.reason);              // every action, and news of a hold
//   if (d.action == mend::ScalingAction::scale_up) start_replica();    // then, once ready:
//   scaler.replica_ready(clock.now());                  // (or replica_start_failed(now))
//   if (d.action == mend::ScalingAction::scale_down) retire_replica();  // counted gone at once
//   if (d.action == mend::ScalingAction::start_abandoned) stop_the_starting_replica();
//
// The rules, at each observe():
//   - a replica started by a scale-up that is not ready within start_timeout is given up
//     (start_abandoned): the caller stops it, and the scale-up cooldown runs from then;
//   - fewer replicas than min (and none starting): scale up at once; more than max: scale down
//     at once (a reload may move the limits);
//   - saturated: scale up by one, unless a replica is already starting (one at a time: the new
//     replica's effect must show before another is added), the replicas (with the one starting)
//     are at max, or the last scale-up (its replica ready, or given up) was less than
//     scale_up_cooldown ago. Such a hold is reported once per reason, not at every observation;
//   - low load (below): after scale_down_delay of nothing but low observations, retire one (down
//     to min), and the next one needs a whole scale_down_delay of low load again. Never while a
//     scale-up is starting, and a scale-up (or its giving up) starts the low period over.
//   Saturated is any of: `rejected` > 0; `pool_exhausted` > 0; `latency` over latency_threshold
//   (when set); with a replica_capacity, in_flight >= replicas x replica_capacity. Low is: not
//   saturated, `latency` (when set, and calls ended) at most half the threshold, and with a
//   replica_capacity, in_flight below scale_down_utilisation x replicas x replica_capacity.
//   Without a capacity and a latency threshold the scaler knows load only by its refusals and
//   errors: quiet for scale_down_delay is low.
//
// Defaults, and why (docs/recovery.md, "Scaling replicas", says more):
//   - scale-up: at once on saturation, as Kubernetes' HPA (no scale-up stabilisation), one
//     replica at a time, then a 30 s cooldown so that the new replica's effect shows in the
//     signals before another is added (HPA adds at most 4 pods per 15 s, Knative's panic window
//     is 6 s: agents take seconds to start and become ready, so 30 s);
//   - scale-down: after 5 min of low load (HPA's scale-down stabilisation window), one replica at
//     a time. Retiring too early costs a cold start at the next burst; keeping a replica a few
//     minutes longer costs only its memory;
//   - low utilisation below 30 %: two replicas at 30 % leave one at 60 %, under Knative's 70 %
//     target, so that a scale-down does not itself saturate the agent and flap back up;
//   - latency low at half its threshold: the same hysteresis for latency;
//   - start_timeout 60 s: the specification's wait-for-ready after a restart.
//
// Sans-IO: every method is handed `now`; nothing here reads a clock, sleeps or starts a thread.
// Tests drive it on a ManualClock and are exact (replica_scaler_test.cc).
//
// Thread-safety: none; one scaler per agent, used under its owner's lock (as CrashLoopBackoff).
// The options are a value.
#ifndef MEND_CORE_REPLICA_SCALER_H_
#define MEND_CORE_REPLICA_SCALER_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mend/core/clock.h"

namespace mend {

struct ReplicaScalerOptions {
  // The replicas that always run (>= 1), and the most that may (>= min_replicas).
  int min_replicas = 1;
  int max_replicas = 1;
  // Calls one replica is meant to take at once; 0: unknown (no utilisation signal).
  int replica_capacity = 0;
  // A mean call latency over this is saturation; zero: latency is no signal.
  Duration latency_threshold{};
  // After a scale-up (its replica ready, or given up), the next waits this long. 30 s.
  Duration scale_up_cooldown = std::chrono::seconds(30);
  // Low load this long, without a break, before one replica is retired. 5 min (HPA's).
  Duration scale_down_delay = std::chrono::minutes(5);
  // In flight below this share of the replicas' capacity is low load. 0.3.
  double scale_down_utilisation = 0.3;
  // A replica a scale-up started that is not ready by then is given up. 60 s.
  Duration start_timeout = std::chrono::seconds(60);
};

// What one observation tells the scaler: the agent's load now and what happened since the last.
struct ScalingSignals {
  int in_flight = 0;                 // calls out to the agent's replicas now
  std::uint64_t rejected = 0;        // calls refused for want of capacity (bulkhead full) since
  std::uint64_t pool_exhausted = 0;  // connection_pool_exhausted failures since
  std::optional<Duration> latency;   // mean latency of the calls that ended since; none: none did
};

enum class ScalingAction : std::uint8_t {
  hold,             // nothing to do
  scale_up,         // start one replica; tell replica_ready() or replica_start_failed()
  scale_down,       // retire one replica (the scaler counts it gone at once)
  start_abandoned,  // the starting replica was not ready in time: stop it
};
std::string_view to_string(ScalingAction action) noexcept;

// Why a saturated agent was not scaled up.
enum class ScalingHold : std::uint8_t { none, starting, at_max, cooldown };
std::string_view to_string(ScalingHold hold) noexcept;

struct ScalingDecision {
  ScalingAction action = ScalingAction::hold;
  ScalingHold held = ScalingHold::none;  // for a hold while saturated
  bool saturated = false;
  bool low = false;
  // The replicas in service once the action is done (a scale-up's replica once it is ready).
  int replicas = 0;
  // Worth an event: every action but hold, and a saturated hold whose reason is not the one
  // reported last (a hold lasting minutes is one event, not one per observation).
  bool report = false;
  // For the event and the log: what was seen and what was decided, in a sentence.
  std::string reason;
};

class ReplicaScaler {
 public:
  // Throws std::invalid_argument, naming the field, for options out of range (min < 1, max <
  // min, negative durations or capacity, a utilisation outside [0, 1)). `replicas`: those in
  // service now (normally min_replicas).
  ReplicaScaler(ReplicaScalerOptions options, int replicas);

  ScalingDecision observe(const ScalingSignals& signals, TimePoint now);
  // The replica a scale-up started is ready and takes calls.
  void replica_ready(TimePoint now);
  // The replica a scale-up asked for could not be started at all.
  void replica_start_failed(TimePoint now);

  int replicas() const noexcept { return replicas_; }   // in service
  bool starting() const noexcept { return starting_; }  // a scale-up's replica is not ready yet
  const ReplicaScalerOptions& options() const noexcept { return options_; }

 private:
  bool in_cooldown(TimePoint now) const noexcept;
  ScalingDecision decide(const ScalingSignals& signals, TimePoint now);
  ScalingDecision scale_up(ScalingDecision d, TimePoint now, const std::string& why);
  ScalingDecision scale_down(ScalingDecision d, TimePoint now, const std::string& why);

  ReplicaScalerOptions options_;
  int replicas_ = 0;
  bool starting_ = false;
  TimePoint start_deadline_{};
  std::optional<TimePoint> last_scale_up_;     // the cooldown runs from it
  std::optional<TimePoint> low_since_;         // the first of an unbroken run of low observations
  ScalingHold last_hold_ = ScalingHold::none;  // the hold reported last
};

}  // namespace mend

#endif  // MEND_CORE_REPLICA_SCALER_H_
