#include "mend/core/circuit_breaker.h"

#include <cstdio>
#include <stdexcept>

#include "breaker_window.h"

namespace mend {
namespace {

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %%", x * 100);
  return buf;
}

void require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(std::string("circuit breaker: ") + message);
}

}  // namespace

CircuitBreakerOptions CircuitBreakerOptions::failure_rate() {
  CircuitBreakerOptions o;
  o.mode = BreakerMode::failure_rate;
  o.half_open_calls = 10;
  return o;
}

CircuitBreaker::CircuitBreaker(std::string name, CircuitBreakerOptions options)
    : name_(std::move(name)), options_(options), mode_(options.mode) {  // word_ is zero: closed
  const auto& o = options_;
  constexpr Duration kTenYears = std::chrono::hours(24 * 365 * 10);
  require(o.recovery_timeout >= Duration::zero() && o.recovery_timeout <= kTenYears,
          "recovery_timeout must be between 0 and ten years");
  require(o.failure_threshold >= 1 && o.failure_threshold < (1 << 29),
          "failure_threshold must be at least 1");
  require(o.success_threshold >= 1, "success_threshold must be at least 1");
  require(o.half_open_calls >= 1, "half_open_calls must be at least 1");
  if (mode_ == BreakerMode::failure_rate) {
    require(o.failure_rate_threshold > 0 && o.failure_rate_threshold <= 1,
            "failure_rate_threshold must be in (0, 1]");
    require(o.slow_call_rate_threshold > 0 && o.slow_call_rate_threshold <= 1,
            "slow_call_rate_threshold must be in (0, 1]");
    require(o.minimum_calls >= 1, "minimum_calls must be at least 1");
    require(o.slow_call_threshold > Duration::zero() && o.slow_call_threshold <= kTenYears,
            "slow_call_threshold must be positive and at most ten years");
    if (o.window == WindowKind::count) {
      require(o.window_size >= 1 && o.window_size <= 1'000'000,
              "window_size must be in [1, 1000000]");
      require(o.minimum_calls <= o.window_size,
              "minimum_calls must not exceed window_size, or the circuit could never open");
      window_ = std::make_unique<detail::CountWindow>(o.window_size);
    } else {
      require(o.window_buckets >= 1 && o.window_buckets <= 3600,
              "window_buckets must be in [1, 3600]");
      require(o.window_duration.count() / o.window_buckets > 0 && o.window_duration <= kTenYears,
              "window_duration must be positive and at most ten years");
      window_ = std::make_unique<detail::TimeWindow>(o.window_duration, o.window_buckets);
    }
  }
}

CircuitBreaker::~CircuitBreaker() = default;

CircuitTransition CircuitBreaker::transition_locked(CircuitState to, TimePoint now,
                                                    std::string reason) {
  const std::uint64_t w = word_.load(std::memory_order_relaxed);
  const CircuitState from = state_of(w);
  if (to == CircuitState::open) opened_at_ = now;
  if (to == CircuitState::half_open || to == CircuitState::closed) {
    half_open_in_flight_ = half_open_admitted_ = 0;
    half_open_successes_ = half_open_failures_ = half_open_slow_ = 0;
  }
  if (window_ && to == CircuitState::closed) window_->reset();
  ++transitions_;
  word_.store(make_word(to, 0, generation_of(w) + 1), std::memory_order_release);
  return CircuitTransition{name_, from, to, now, std::move(reason)};
}

CircuitBreaker::Permit CircuitBreaker::acquire_slow(const Clock& clock) {
  std::vector<CircuitTransition> out;
  Permit p;
  {
    MutexLock lock(mu_);
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    CircuitState s = state_of(w);
    if (s == CircuitState::closed) {  // closed again since the caller looked
      return Permit::admit(CircuitState::closed, generation_of(w),
                           mode_ != BreakerMode::consecutive ? clock.coarse_now() : TimePoint{});
    }
    if (s == CircuitState::isolated)
      return Permit::reject(CircuitState::isolated, generation_of(w));
    if (s == CircuitState::open) {
      const TimePoint now = clock.now();
      const TimePoint probe_at = opened_at_ + options_.recovery_timeout;
      if (now < probe_at)
        return Permit::reject(CircuitState::open, generation_of(w), probe_at - now);
      out.push_back(transition_locked(CircuitState::half_open, now, "recovery timeout elapsed"));
      w = word_.load(std::memory_order_relaxed);
    }
    // Half-open: consecutive mode bounds probes in flight, failure-rate mode probes in all.
    const bool room = mode_ == BreakerMode::consecutive
                          ? half_open_in_flight_ < options_.half_open_calls
                          : half_open_admitted_ < options_.half_open_calls;
    if (room) {
      ++half_open_in_flight_;
      ++half_open_admitted_;
      p = Permit::admit(CircuitState::half_open, generation_of(w), clock.coarse_now());
    } else {
      p = Permit::reject(CircuitState::half_open, generation_of(w));
    }
  }
  notify(out);
  return p;
}

bool CircuitBreaker::is_slow(const Permit& permit, TimePoint now) const {
  return mode_ == BreakerMode::failure_rate &&
         now - permit.started() >= options_.slow_call_threshold;
}

void CircuitBreaker::closed_rate_outcome(const Permit& permit, bool failed, const Clock& clock) {
  // A call admitted before a transition must not land in the window the transition reset.
  if (generation_of(word_.load(std::memory_order_relaxed)) != permit.generation()) return;
  const TimePoint now = clock.coarse_now();
  const bool slow_call = is_slow(permit, now);
  const auto outcome = static_cast<std::uint8_t>(detail::kCall | (failed ? detail::kFailed : 0) |
                                                 (slow_call ? detail::kSlow : 0));
  // Devirtualized: this runs on every call in failure-rate mode. It writes only this thread's
  // shard of the window (src/core/breaker_window.h).
  if (options_.window == WindowKind::count) {
    static_cast<detail::CountWindow*>(window_.get())->record(now, outcome);
  } else {
    static_cast<detail::TimeWindow*>(window_.get())->record(now, outcome);
  }
  // A plain success cannot raise either rate: no need to look at the window.
  if (!failed && !slow_call) return;
  judge_window(permit, outcome, now, clock);
}

// Out of line, so that the success path above does not pay for this one's frame.
[[gnu::noinline]] void CircuitBreaker::judge_window(const Permit& permit, std::uint8_t outcome,
                                                    TimePoint now, const Clock& clock) {
  std::vector<CircuitTransition> out;
  {
    MutexLock lock(mu_);
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (state_of(w) != CircuitState::closed || generation_of(w) != permit.generation()) return;
    window_->note(outcome);
    const detail::WindowTotals t = window_->totals(now);
    if (t.calls < options_.minimum_calls) return;
    const double failure_rate = static_cast<double>(t.failures) / t.calls;
    const double slow_rate = static_cast<double>(t.slow) / t.calls;
    if (failure_rate >= options_.failure_rate_threshold) {
      out.push_back(transition_locked(
          CircuitState::open, clock.now(),
          "failure rate " + percent(failure_rate) + " over " + std::to_string(t.calls) + " calls"));
    } else if (slow_rate >= options_.slow_call_rate_threshold) {
      out.push_back(transition_locked(
          CircuitState::open, clock.now(),
          "slow-call rate " + percent(slow_rate) + " over " + std::to_string(t.calls) + " calls"));
    }
  }
  notify(out);
}

void CircuitBreaker::half_open_outcome_locked(bool failed, bool slow_call, TimePoint now,
                                              std::vector<CircuitTransition>& out) {
  if (half_open_in_flight_ > 0) --half_open_in_flight_;
  if (mode_ == BreakerMode::consecutive) {
    if (failed) {
      out.push_back(transition_locked(CircuitState::open, now, "half-open probe failed"));
    } else if (++half_open_successes_ >= options_.success_threshold) {
      out.push_back(
          transition_locked(CircuitState::closed, now,
                            std::to_string(half_open_successes_) + " half-open probes succeeded"));
    }
    return;
  }
  failed ? ++half_open_failures_ : ++half_open_successes_;
  if (slow_call) ++half_open_slow_;
  const double n = options_.half_open_calls;
  // Decide as soon as the outcome is certain: enough failures (or slow calls) among the probes
  // open it whatever the rest do; once all probes are in, anything else closes it.
  if (half_open_failures_ >= options_.failure_rate_threshold * n) {
    out.push_back(transition_locked(CircuitState::open, now,
                                    "half-open failure rate " + percent(half_open_failures_ / n)));
  } else if (half_open_slow_ >= options_.slow_call_rate_threshold * n) {
    out.push_back(transition_locked(CircuitState::open, now,
                                    "half-open slow-call rate " + percent(half_open_slow_ / n)));
  } else if (half_open_failures_ + half_open_successes_ >= options_.half_open_calls) {
    out.push_back(transition_locked(
        CircuitState::closed, now,
        "half-open failure rate " + percent(half_open_failures_ / n) + " below threshold"));
  }
}

void CircuitBreaker::success_slow(const Permit& permit, const Clock& clock) {
  if (!permit.allowed()) return;
  if (permit.state() == CircuitState::closed && mode_ == BreakerMode::failure_rate) {
    closed_rate_outcome(permit, false, clock);
    return;
  }
  std::vector<CircuitTransition> out;
  {
    MutexLock lock(mu_);
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (generation_of(w) != permit.generation()) return;  // admitted before a transition
    switch (state_of(w)) {
      case CircuitState::closed:
        if (count_of(w) > 0) {
          word_.store(make_word(CircuitState::closed, count_of(w) - 1, generation_of(w)),
                      std::memory_order_release);
        }
        return;
      case CircuitState::half_open: {
        const TimePoint coarse = clock.coarse_now();
        half_open_outcome_locked(false, is_slow(permit, coarse), clock.now(), out);
        break;
      }
      case CircuitState::open:
      case CircuitState::isolated:
        return;
    }
  }
  notify(out);
}

void CircuitBreaker::on_failure(const Permit& permit, const Clock& clock) {
  if (!permit.allowed()) return;
  if (permit.state() == CircuitState::closed && mode_ == BreakerMode::failure_rate) {
    closed_rate_outcome(permit, true, clock);
    return;
  }
  std::vector<CircuitTransition> out;
  {
    MutexLock lock(mu_);
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (generation_of(w) != permit.generation()) return;
    switch (state_of(w)) {
      case CircuitState::closed: {
        const std::uint32_t failures = count_of(w) + 1;
        if (failures >= static_cast<std::uint32_t>(options_.failure_threshold)) {
          out.push_back(transition_locked(CircuitState::open, clock.now(),
                                          std::to_string(failures) + " failures"));
        } else {
          word_.store(make_word(CircuitState::closed, failures, generation_of(w)),
                      std::memory_order_release);
        }
        break;
      }
      case CircuitState::half_open:
        half_open_outcome_locked(true, false, clock.now(), out);
        break;
      case CircuitState::open:
      case CircuitState::isolated:
        return;
    }
  }
  notify(out);
}

void CircuitBreaker::on_ignored(const Permit& permit) {
  if (!permit.allowed() || permit.state() != CircuitState::half_open) return;
  MutexLock lock(mu_);
  const std::uint64_t w = word_.load(std::memory_order_relaxed);
  if (generation_of(w) != permit.generation() || state_of(w) != CircuitState::half_open) return;
  if (half_open_in_flight_ > 0) --half_open_in_flight_;
  if (half_open_admitted_ > 0) --half_open_admitted_;
}

Error CircuitBreaker::rejection(const Permit& permit) const {
  std::string message = "circuit '" + name_ + "' is " + std::string(to_string(permit.state()));
  if (permit.state() == CircuitState::half_open) message += " and its probes are all in flight";
  if (permit.state() == CircuitState::isolated) message += " by an operator";
  Error e =
      Error::classified_as(ErrorType::external_service_down, Severity::medium, std::move(message));
  e.kind = "circuit_open";
  e.stop = StopReason::circuit_open;
  if (permit.retry_after() > Duration::zero()) e.retry_after = permit.retry_after();
  return e;
}

void CircuitBreaker::isolate(const Clock& clock) {
  std::vector<CircuitTransition> out;
  {
    MutexLock lock(mu_);
    if (state() == CircuitState::isolated) return;
    out.push_back(transition_locked(CircuitState::isolated, clock.now(), "isolated by operator"));
  }
  notify(out);
}

void CircuitBreaker::reset(const Clock& clock) {
  std::vector<CircuitTransition> out;
  {
    MutexLock lock(mu_);
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (state_of(w) == CircuitState::closed) {
      // Closed already: its counts are forgotten, and nothing changed state, so no transition
      // is reported (a log line "closed -> closed" would say something happened).
      if (window_) window_->reset();
      word_.store(make_word(CircuitState::closed, 0, generation_of(w) + 1),
                  std::memory_order_release);
      return;
    }
    out.push_back(transition_locked(CircuitState::closed, clock.now(), "reset by operator"));
  }
  notify(out);
}

void CircuitBreaker::continue_from(const CircuitBreaker& before) {
  if (&before == this) return;
  std::uint64_t theirs = 0;
  TimePoint opened_at{};
  std::uint64_t transitions = 0;
  {
    MutexLock lock(before.mu_);
    theirs = before.word_.load(std::memory_order_acquire);
    opened_at = before.opened_at_;
    transitions = before.transitions_;
  }
  MutexLock lock(mu_);
  const CircuitState state = state_of(theirs);
  opened_at_ = opened_at;
  transitions_ = transitions;
  half_open_in_flight_ = half_open_admitted_ = 0;
  half_open_successes_ = half_open_failures_ = half_open_slow_ = 0;
  if (window_) window_->reset();
  const std::uint32_t in_a_row =
      mode_ == BreakerMode::consecutive && state == CircuitState::closed ? count_of(theirs) : 0;
  const std::uint64_t mine = word_.load(std::memory_order_relaxed);
  word_.store(make_word(state, in_a_row, generation_of(mine) + 1), std::memory_order_release);
}

CircuitSnapshot CircuitBreaker::snapshot(const Clock& clock) const {
  MutexLock lock(mu_);
  const std::uint64_t w = word_.load(std::memory_order_relaxed);
  CircuitSnapshot s;
  s.state = state_of(w);
  s.failure_count = static_cast<int>(count_of(w));
  if (window_) {
    const detail::WindowTotals t = window_->totals(clock.coarse_now());
    s.window_calls = t.calls;
    s.window_failures = t.failures;
    s.window_slow_calls = t.slow;
  }
  s.half_open_in_flight = half_open_in_flight_;
  s.half_open_successes = half_open_successes_;
  s.half_open_failures = half_open_failures_;
  s.opened_at = opened_at_;
  s.probe_at = opened_at_ + options_.recovery_timeout;
  s.transitions = transitions_;
  return s;
}

void CircuitBreaker::add_listener(Listener listener) {
  MutexLock lock(listeners_mu_);
  listeners_.push_back(std::move(listener));
}

void CircuitBreaker::notify(const std::vector<CircuitTransition>& transitions) {
  if (transitions.empty()) return;
  std::vector<Listener> listeners;
  {
    MutexLock lock(listeners_mu_);
    listeners = listeners_;
  }
  // Outside every lock: a listener may reset the breaker, add listeners or make calls.
  for (const auto& t : transitions) {
    for (const auto& l : listeners) {
      try {
        l(t);
      } catch (...) {
        // A listener's failure must not undo the transition or reach the caller.
      }
    }
  }
}

void forward_transitions(CircuitBreaker& breaker, EventSink& sink) {
  breaker.add_listener([&sink](const CircuitTransition& t) {
    Event e;
    e.kind = EventKind::circuit_transition;
    e.at = t.at;
    e.source = std::string(t.name);
    e.from = t.from;
    e.to = t.to;
    e.detail = t.reason;
    sink.emit(e);
  });
}

CircuitBreakerRegistry::CircuitBreakerRegistry(CircuitBreakerOptions defaults)
    : defaults_(defaults) {}

void CircuitBreakerRegistry::set_options(std::string key, CircuitBreakerOptions options) {
  std::unique_lock lock(mu_);
  options_[std::move(key)] = options;
}

std::shared_ptr<CircuitBreaker> CircuitBreakerRegistry::get(std::string_view key) {
  {
    std::shared_lock lock(mu_);
    if (auto it = breakers_.find(key); it != breakers_.end()) return it->second;
  }
  std::unique_lock lock(mu_);
  if (auto it = breakers_.find(key); it != breakers_.end()) return it->second;
  auto o = options_.find(key);
  auto breaker = std::make_shared<CircuitBreaker>(std::string(key),
                                                  o != options_.end() ? o->second : defaults_);
  for (const auto& l : listeners_) breaker->add_listener(l);
  breakers_.emplace(std::string(key), breaker);
  return breaker;
}

std::shared_ptr<CircuitBreaker> CircuitBreakerRegistry::find(std::string_view key) const {
  std::shared_lock lock(mu_);
  auto it = breakers_.find(key);
  return it != breakers_.end() ? it->second : nullptr;
}

std::vector<std::shared_ptr<CircuitBreaker>> CircuitBreakerRegistry::all() const {
  std::shared_lock lock(mu_);
  std::vector<std::shared_ptr<CircuitBreaker>> out;
  out.reserve(breakers_.size());
  for (const auto& [k, b] : breakers_) out.push_back(b);
  return out;
}

void CircuitBreakerRegistry::add_listener(CircuitBreaker::Listener listener) {
  std::unique_lock lock(mu_);
  for (const auto& [k, b] : breakers_) b->add_listener(listener);
  listeners_.push_back(std::move(listener));
}

}  // namespace mend
