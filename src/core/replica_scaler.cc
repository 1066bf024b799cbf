#include "mend/core/replica_scaler.h"

#include <stdexcept>
#include <utility>

#include "mend/core/text.h"

namespace mend {
namespace {

void scaler_require(bool condition, const char* field, const char* rule) {
  if (!condition) {
    throw std::invalid_argument(std::string("ReplicaScalerOptions.") + field + " " + rule);
  }
}

std::string scaler_time_text(Duration d) {
  return seconds_text(std::chrono::duration<double>(d).count());
}

// "1 call in flight", "8 calls in flight"
std::string scaler_calls_text(int n) {
  return std::to_string(n) + (n == 1 ? " call" : " calls") + " in flight";
}

std::string scaler_replicas_text(int n) {
  return std::to_string(n) + (n == 1 ? " replica" : " replicas");
}

// "3 calls refused for want of capacity; mean latency 310 ms over the 100 ms threshold"
std::string scaler_saturation_text(const ScalingSignals& s, const ReplicaScalerOptions& o,
                                   int replicas) {
  std::string text;
  auto add = [&text](const std::string& part) {
    if (!text.empty()) text += "; ";
    text += part;
  };
  if (s.rejected > 0) {
    add(std::to_string(s.rejected) + (s.rejected == 1 ? " call" : " calls") +
        " refused for want of capacity");
  }
  if (s.pool_exhausted > 0) {
    add(std::to_string(s.pool_exhausted) + " connection_pool_exhausted " +
        (s.pool_exhausted == 1 ? "error" : "errors"));
  }
  if (o.latency_threshold > Duration::zero() && s.latency && *s.latency > o.latency_threshold) {
    add("mean latency " + scaler_time_text(*s.latency) + " over the " +
        scaler_time_text(o.latency_threshold) + " threshold");
  }
  if (o.replica_capacity > 0 && s.in_flight >= replicas * o.replica_capacity) {
    add(scaler_calls_text(s.in_flight) + (s.in_flight == 1 ? " fills " : " fill ") +
        scaler_replicas_text(replicas) + " of " + std::to_string(o.replica_capacity));
  }
  return text;
}

bool scaler_low_load(const ScalingSignals& s, const ReplicaScalerOptions& o, int replicas) {
  if (o.latency_threshold > Duration::zero() && s.latency && *s.latency * 2 > o.latency_threshold) {
    return false;
  }
  if (o.replica_capacity > 0) {
    const double capacity = static_cast<double>(replicas) * o.replica_capacity;
    if (static_cast<double>(s.in_flight) >= o.scale_down_utilisation * capacity) return false;
  }
  return true;
}

}  // namespace

std::string_view to_string(ScalingAction action) noexcept {
  switch (action) {
    case ScalingAction::hold:
      return "hold";
    case ScalingAction::scale_up:
      return "scale_up";
    case ScalingAction::scale_down:
      return "scale_down";
    case ScalingAction::start_abandoned:
      return "start_abandoned";
  }
  return "hold";
}

std::string_view to_string(ScalingHold hold) noexcept {
  switch (hold) {
    case ScalingHold::none:
      return "none";
    case ScalingHold::starting:
      return "starting";
    case ScalingHold::at_max:
      return "at_max";
    case ScalingHold::cooldown:
      return "cooldown";
  }
  return "none";
}

ReplicaScaler::ReplicaScaler(ReplicaScalerOptions options, int replicas)
    : options_(options), replicas_(replicas) {
  const ReplicaScalerOptions& o = options_;
  scaler_require(o.min_replicas >= 1, "min_replicas", "must be at least 1");
  scaler_require(o.max_replicas >= o.min_replicas, "max_replicas", "must be at least min_replicas");
  scaler_require(o.replica_capacity >= 0, "replica_capacity", "must not be negative");
  scaler_require(o.latency_threshold >= Duration::zero(), "latency_threshold",
                 "must not be negative");
  scaler_require(o.scale_up_cooldown >= Duration::zero(), "scale_up_cooldown",
                 "must not be negative");
  scaler_require(o.scale_down_delay >= Duration::zero(), "scale_down_delay",
                 "must not be negative");
  scaler_require(o.scale_down_utilisation >= 0 && o.scale_down_utilisation < 1,
                 "scale_down_utilisation", "must be at least 0 and below 1");
  scaler_require(o.start_timeout > Duration::zero(), "start_timeout", "must be positive");
  if (replicas < 0) throw std::invalid_argument("ReplicaScaler: replicas must not be negative");
}

bool ReplicaScaler::in_cooldown(TimePoint now) const noexcept {
  return last_scale_up_ && now - *last_scale_up_ < options_.scale_up_cooldown;
}

ScalingDecision ReplicaScaler::observe(const ScalingSignals& signals, TimePoint now) {
  ScalingDecision d = decide(signals, now);
  d.replicas = replicas_ + (d.action == ScalingAction::scale_up ? 1 : 0);
  if (d.action != ScalingAction::hold) {
    d.report = true;
    last_hold_ = ScalingHold::none;
  } else if (d.held != ScalingHold::none) {
    d.report = d.held != last_hold_;
    last_hold_ = d.held;
  } else {
    last_hold_ = ScalingHold::none;  // the next saturated hold is news again
  }
  return d;
}

ScalingDecision ReplicaScaler::decide(const ScalingSignals& signals, TimePoint now) {
  ScalingDecision d;
  if (starting_ && now >= start_deadline_) {
    starting_ = false;
    last_scale_up_ = now;
    low_since_.reset();
    d.action = ScalingAction::start_abandoned;
    d.reason = "the replica started to scale up was not ready within " +
               scaler_time_text(options_.start_timeout) + ": scale-up given up, " +
               scaler_replicas_text(replicas_) + " in service";
    return d;
  }
  if (replicas_ > options_.max_replicas) {
    low_since_.reset();
    return scale_down(d, now,
                      scaler_replicas_text(replicas_) + " above the maximum of " +
                          std::to_string(options_.max_replicas));
  }
  if (replicas_ < options_.min_replicas && !starting_) {
    return scale_up(d, now,
                    scaler_replicas_text(replicas_) + " below the minimum of " +
                        std::to_string(options_.min_replicas));
  }

  const std::string saturation = scaler_saturation_text(signals, options_, replicas_);
  d.saturated = !saturation.empty();
  if (d.saturated) {
    low_since_.reset();
    if (starting_) {
      d.held = ScalingHold::starting;
      d.reason = "saturated (" + saturation + ") while a replica starts: waiting for it";
    } else if (replicas_ >= options_.max_replicas) {
      d.held = ScalingHold::at_max;
      d.reason = "saturated (" + saturation + ") at the maximum of " +
                 scaler_replicas_text(options_.max_replicas);
    } else if (in_cooldown(now)) {
      d.held = ScalingHold::cooldown;
      d.reason = "saturated (" + saturation + "), but the last scale-up was " +
                 scaler_time_text(now - *last_scale_up_) + " ago (cooldown " +
                 scaler_time_text(options_.scale_up_cooldown) + ")";
    } else {
      return scale_up(d, now, "saturated: " + saturation);
    }
    return d;
  }

  d.low = scaler_low_load(signals, options_, replicas_);
  if (!d.low) {
    low_since_.reset();
    return d;
  }
  if (!low_since_) low_since_ = now;
  // Never while a scale-up is starting: the load that asked for it may only be paused.
  if (starting_ || replicas_ <= options_.min_replicas) return d;
  const Duration low_for = now - *low_since_;
  if (low_for < options_.scale_down_delay) return d;
  low_since_ = now;  // the next one needs a whole delay of low load again
  std::string why =
      "load low for " + scaler_time_text(low_for) + " (" + scaler_calls_text(signals.in_flight);
  if (options_.replica_capacity > 0) {
    why += ", under " + std::to_string(static_cast<int>(options_.scale_down_utilisation * 100)) +
           " % of " + std::to_string(replicas_ * options_.replica_capacity);
  }
  why += ")";
  return scale_down(d, now, why);
}

ScalingDecision ReplicaScaler::scale_up(ScalingDecision d, TimePoint now, const std::string& why) {
  starting_ = true;
  start_deadline_ = now + options_.start_timeout;
  low_since_.reset();
  d.action = ScalingAction::scale_up;
  d.reason = why + "; scaling up from " + std::to_string(replicas_) + " to " +
             scaler_replicas_text(replicas_ + 1);
  return d;
}

ScalingDecision ReplicaScaler::scale_down(ScalingDecision d, TimePoint /*now*/,
                                          const std::string& why) {
  d.action = ScalingAction::scale_down;
  d.reason = why + "; scaling down from " + std::to_string(replicas_) + " to " +
             scaler_replicas_text(replicas_ - 1);
  --replicas_;
  return d;
}

void ReplicaScaler::replica_ready(TimePoint now) {
  if (!starting_) return;
  starting_ = false;
  ++replicas_;
  last_scale_up_ = now;
  low_since_.reset();
}

void ReplicaScaler::replica_start_failed(TimePoint now) {
  if (!starting_) return;
  starting_ = false;
  last_scale_up_ = now;
  low_since_.reset();
}

}  // namespace mend
