// File: mend/core/circuit_breaker.h
//
// A circuit breaker stops calling a dependency that keeps failing, and lets a few probes through
// after a pause to find out whether it is back.
//
// Consecutive mode (the default, the user's specification exactly):
//   closed     a failure adds one to the failure count, a success takes one off (never below 0);
//              at failure_threshold (5) failures the circuit opens
//   open       every call is rejected at once with a distinct error that says when to come back;
//              recovery_timeout (60 s) after the failure that opened it, the next call goes
//              through as a probe and the circuit is half-open
//   half_open  up to half_open_calls (3) probes at once; success_threshold (3) successes close
//              it (count back to 0); any failure re-opens it for another recovery_timeout
//
// Failure-rate mode (CircuitBreakerOptions::failure_rate(), after Resilience4j): the outcomes of
// the calls admitted while closed go into a sliding window; once it holds minimum_calls calls, a
// failure rate >= failure_rate_threshold or a slow-call rate >= slow_call_rate_threshold opens the
// circuit. A call is slow when it took slow_call_threshold or longer (measured on the coarse
// clock). The window is
//   count (window_size): the last window_size calls, in the order their outcomes reached the
//     breaker; calls that end on different threads at about the same time have no order among
//     themselves, so which of them leaves the window first is arbitrary;
//   time (window_duration in window_buckets buckets): the calls that ended, on the coarse clock,
//     in the current bucket or the window_buckets - 1 before it. Buckets are window_duration /
//     window_buckets long and aligned on multiples of that, so the window moves a bucket at a
//     time and spans between window_duration minus one bucket and window_duration.
// The rates are judged after each failure or slow call (a plain success cannot raise them).
// Closing (from half-open, or by reset()) empties the window. Half-open admits half_open_calls
// probes in all and decides on their failure rate.
//
// Manual control: isolate() holds the circuit open until reset(); reset() closes it.
// Listeners hear every transition.
//
//   auto breaker =
//       std::make_shared<mend::CircuitBreaker>("billing", mend::CircuitBreakerOptions{});
//   mend::CircuitBreaker::Permit p = breaker->try_acquire(clock);
//   if (!p.allowed()) return breaker->rejection(p);     // CircuitOpenError's error value
//   ok ? breaker->on_success(p, clock) : breaker->on_failure(p, clock);
// Every allowed permit must be completed by exactly one of on_success, on_failure or on_ignored.
// The pipeline (mend/core/pipeline.h) and mend::AttemptPolicy (mend/core/attempt_policy.h) do all
// of this.
//
// Thread-safety: all methods are safe from many threads. In consecutive mode, try_acquire and
// on_success in the closed state with a zero failure count only read one atomic word: no lock, no
// shared write, no clock reading. In failure-rate mode, closed, they take no lock either and write
// only memory of the calling thread's own: each thread records into a shard of the window of its
// own (threads alive at once get distinct shards, up to 64), and the shards are summed under the
// breaker's mutex when a failure or slow call is judged, and for snapshot(). So the window is
// exact on one thread, and loses no outcome while at most 64 threads record at once; beyond that,
// two threads may share a shard and an outcome may now and then be lost (whatever it was, so the
// rates stay unbiased). Transitions take a mutex. Results of calls admitted before a
// transition are ignored after it (a late failure does not re-open a circuit that has since
// closed). Listeners run on the thread that caused the transition, outside the breaker's lock.
#ifndef MEND_CORE_CIRCUIT_BREAKER_H_
#define MEND_CORE_CIRCUIT_BREAKER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/events.h"
#include "mend/core/thread_annotations.h"

namespace mend {

enum class BreakerMode : std::uint8_t { consecutive, failure_rate };
enum class WindowKind : std::uint8_t { count, time };

struct CircuitBreakerOptions {
  BreakerMode mode = BreakerMode::consecutive;
  Duration recovery_timeout = std::chrono::seconds(60);  // the specification's 60 s
  // consecutive mode
  int failure_threshold = 5;  // the specification's 5
  int success_threshold = 3;  // the specification's 3 half-open successes close the circuit
  // Probes admitted in half-open: at once (consecutive), or in all (failure-rate).
  int half_open_calls = 3;
  // failure-rate mode (Resilience4j's defaults)
  double failure_rate_threshold = 0.5;
  WindowKind window = WindowKind::count;
  int window_size = 100;                                // calls, for a count window
  Duration window_duration = std::chrono::seconds(60);  // for a time window
  int window_buckets = 10;                              // for a time window
  int minimum_calls = 100;
  Duration slow_call_threshold = std::chrono::seconds(60);
  double slow_call_rate_threshold = 1.0;
  // Errors of these types count neither as failures nor as successes (as Resilience4j's
  // ignoreExceptions): say, validation_failed, when a bad request says nothing about the agent.
  // Empty by default: the specification counts every failure.
  ErrorTypeSet ignored;

  // The specification's consecutive breaker (same as the defaults above).
  static CircuitBreakerOptions consecutive() { return {}; }
  // Failure-rate mode with Resilience4j's defaults: 50 % of the last 100 calls, at least 100
  // calls, 10 half-open probes, slow at 60 s, 60 s open.
  static CircuitBreakerOptions failure_rate();
};

struct CircuitTransition {
  std::string_view name;
  CircuitState from = CircuitState::closed;
  CircuitState to = CircuitState::closed;
  TimePoint at{};
  std::string reason;
};

// What a breaker looks like now, for operators and tests.
struct CircuitSnapshot {
  CircuitState state = CircuitState::closed;
  int failure_count = 0;  // consecutive mode, closed
  int window_calls = 0;   // failure-rate mode, closed
  int window_failures = 0;
  int window_slow_calls = 0;
  int half_open_in_flight = 0;
  int half_open_successes = 0;
  int half_open_failures = 0;
  TimePoint opened_at{};
  TimePoint probe_at{};  // when an open circuit will admit a probe
  std::uint64_t transitions = 0;
};

class CircuitBreaker {
 public:
  using Listener = std::function<void(const CircuitTransition&)>;
  class Window;  // implementation detail of the failure-rate mode (src/core/breaker_window.h)

  // The answer to try_acquire(). Small and trivially copyable, so it travels in registers.
  class Permit {
   public:
    // Indeterminate until assigned (as std::chrono::duration's default), so that an executor can
    // keep permits without paying to zero them on every call.
    Permit() = default;
    bool allowed() const noexcept { return (meta_ >> 40) & 1; }
    // The state the call was admitted in, or rejected by.
    CircuitState state() const noexcept { return static_cast<CircuitState>((meta_ >> 32) & 0xff); }
    // When rejected: time until a probe may go through (zero when unknown).
    Duration retry_after() const noexcept { return allowed() ? Duration{} : Duration(stamp_); }

   private:
    friend class CircuitBreaker;
    static Permit admit(CircuitState state, std::uint32_t generation, TimePoint started = {}) {
      return Permit(started.time_since_epoch().count(), generation, state, true);
    }
    static Permit reject(CircuitState state, std::uint32_t generation, Duration retry_after = {}) {
      return Permit(retry_after.count(), generation, state, false);
    }
    // Two 8-byte words, each written with one store: copies and reads forward from them.
    Permit(std::int64_t stamp, std::uint32_t generation, CircuitState state, bool allowed)
        : stamp_(stamp),
          meta_(generation | (static_cast<std::uint64_t>(state) << 32) |
                (static_cast<std::uint64_t>(allowed) << 40)) {}
    TimePoint started() const noexcept { return TimePoint(Duration(stamp_)); }
    std::uint32_t generation() const noexcept { return static_cast<std::uint32_t>(meta_); }

    std::int64_t stamp_;  // admitted: start time (failure-rate mode); rejected: retry-after
    std::uint64_t meta_;  // generation (bits 0-31), state (32-39), allowed (40)
  };
  static_assert(sizeof(Permit) == 16 && std::is_trivially_default_constructible_v<Permit>);

  // Throws std::invalid_argument when the options are out of range (the message names the field).
  CircuitBreaker(std::string name, CircuitBreakerOptions options);
  ~CircuitBreaker();
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  [[nodiscard]] Permit try_acquire(const Clock& clock) {
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    if (state_of(w) == CircuitState::closed) [[likely]] {
      if (mode_ == BreakerMode::consecutive)
        return Permit::admit(CircuitState::closed, generation_of(w));
      return Permit::admit(CircuitState::closed, generation_of(w), clock.coarse_now());
    }
    return acquire_slow(clock);
  }
  // True when a consecutive-mode breaker is closed with no failure to forgive: a call that
  // succeeds then has nothing to record (its success is ordered at this read). One atomic load.
  bool closed_without_failures() const noexcept {
    return mode_ == BreakerMode::consecutive &&
           (word_.load(std::memory_order_acquire) & kLowMask) == 0;
  }

  // Consecutive mode only, for an executor that checked the mode once when it was built: the
  // closed-state halves of try_acquire_if_closed() and on_success() without the mode tests.
  [[nodiscard]] Permit try_acquire_if_closed_consecutive() const noexcept {
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    if (state_of(w) != CircuitState::closed) [[unlikely]]
      return Permit::reject(state_of(w), 0);
    return Permit::admit(CircuitState::closed, generation_of(w));
  }
  void on_success_consecutive(const Permit& permit, const Clock& clock) {
    if ((word_.load(std::memory_order_relaxed) & kLowMask) == 0) [[likely]]
      return;
    success_slow(permit, clock);
  }

  // Admits only when closed, and otherwise refuses without side effects (no probe slot taken,
  // no transition). For executors that check several breakers before a call and take their
  // general path when any is not closed.
  [[nodiscard]] Permit try_acquire_if_closed(const Clock& clock) const {
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    if (state_of(w) != CircuitState::closed) [[unlikely]]
      return Permit::reject(state_of(w), 0);
    if (mode_ == BreakerMode::consecutive)
      return Permit::admit(CircuitState::closed, generation_of(w));
    return Permit::admit(CircuitState::closed, generation_of(w), clock.coarse_now());
  }
  void on_success(const Permit& permit, const Clock& clock) {
    if (permit.state() == CircuitState::closed) [[likely]] {
      if (mode_ == BreakerMode::consecutive) {
        // Closed with no failures to forgive: nothing to write.
        if ((word_.load(std::memory_order_relaxed) & kLowMask) == 0) return;
      } else {
        closed_rate_outcome(permit, false, clock);
        return;
      }
    }
    success_slow(permit, clock);
  }
  void on_failure(const Permit& permit, const Clock& clock);
  // The call was abandoned (cancelled, or failed in a way that says nothing about the dependency):
  // releases a half-open probe slot without counting an outcome.
  void on_ignored(const Permit& permit);

  // The error value for a rejected permit: external_service_down/medium, stop circuit_open,
  // retry_after set when known.
  Error rejection(const Permit& permit) const;

  void isolate(const Clock& clock);  // hold open until reset()
  void reset(const Clock& clock);    // close now, forgetting all counts

  // Takes up where `before` is: the breaker this one replaces for the same dependency (mend
  // serve builds new breakers when an agent's replicas change, and the agent's circuit must not
  // close because a replica joined). Its state, when it opened, its failures in a row
  // (consecutive mode) and its transitions so far carry over; a half-open breaker starts its
  // probes afresh and a failure-rate window its counts (calls in flight report to `before`). No
  // transition is announced: nothing changed for the dependency. Call it before this breaker is
  // shared; `before` may be in use meanwhile.
  void continue_from(const CircuitBreaker& before) MEND_EXCLUDES(mu_);

  CircuitState state() const noexcept { return state_of(word_.load(std::memory_order_acquire)); }
  // Time windows are read as of clock.coarse_now().
  CircuitSnapshot snapshot(const Clock& clock) const;
  const std::string& name() const noexcept { return name_; }
  const CircuitBreakerOptions& options() const noexcept { return options_; }

  // Listeners run outside the breaker's locks, on the thread that caused the transition; they may
  // call back into the breaker. A listener that throws is ignored.
  void add_listener(Listener listener);

 private:
  // word_ layout: bits 0-1 state, bits 2-31 closed-state failure count (consecutive mode),
  // bits 32-63 generation (bumped at every transition).
  static constexpr std::uint64_t kStateMask = 0x3;
  static constexpr std::uint64_t kLowMask = 0xFFFFFFFFull;
  static CircuitState state_of(std::uint64_t w) {
    return static_cast<CircuitState>(w & kStateMask);
  }
  static std::uint32_t count_of(std::uint64_t w) {
    return static_cast<std::uint32_t>((w & kLowMask) >> 2);
  }
  static std::uint32_t generation_of(std::uint64_t w) {
    return static_cast<std::uint32_t>(w >> 32);
  }
  static std::uint64_t make_word(CircuitState s, std::uint32_t count, std::uint32_t generation) {
    return (static_cast<std::uint64_t>(generation) << 32) |
           (static_cast<std::uint64_t>(count) << 2) | static_cast<std::uint64_t>(s);
  }

  Permit acquire_slow(const Clock& clock);
  void success_slow(const Permit& permit, const Clock& clock);
  // Failure-rate mode, closed: records the outcome and, when it could open the circuit, judges
  // the window.
  void closed_rate_outcome(const Permit& permit, bool failed, const Clock& clock);
  // Its second half, for a failure or a slow call: marks it and judges the window, under mu_.
  void judge_window(const Permit& permit, std::uint8_t outcome, TimePoint now, const Clock& clock)
      MEND_EXCLUDES(mu_);
  bool is_slow(const Permit& permit, TimePoint now) const;
  // Called with mu_ held; the transition is announced after unlocking.
  CircuitTransition transition_locked(CircuitState to, TimePoint now, std::string reason)
      MEND_REQUIRES(mu_);
  void half_open_outcome_locked(bool failed, bool slow_call, TimePoint now,
                                std::vector<CircuitTransition>& out) MEND_REQUIRES(mu_);
  void notify(const std::vector<CircuitTransition>& transitions);

  const std::string name_;
  const CircuitBreakerOptions options_;

  // The hot line: everything the closed-state success path reads, and nothing written on it.
  alignas(64) std::atomic<std::uint64_t> word_{0};
  const BreakerMode mode_;

  alignas(64) mutable Mutex mu_;
  // Failure-rate mode. Records lock-free, each thread into its own shard; judged under mu_.
  std::unique_ptr<Window> window_;
  TimePoint opened_at_ MEND_GUARDED_BY(mu_) = {};
  int half_open_in_flight_ MEND_GUARDED_BY(mu_) = 0;
  int half_open_admitted_ MEND_GUARDED_BY(mu_) = 0;
  int half_open_successes_ MEND_GUARDED_BY(mu_) = 0;
  int half_open_failures_ MEND_GUARDED_BY(mu_) = 0;
  int half_open_slow_ MEND_GUARDED_BY(mu_) = 0;
  std::uint64_t transitions_ MEND_GUARDED_BY(mu_) = 0;

  Mutex listeners_mu_;
  std::vector<Listener> listeners_ MEND_GUARDED_BY(listeners_mu_);
};

// Forwards a breaker's transitions to an event sink as circuit_transition events.
void forward_transitions(CircuitBreaker& breaker, EventSink& sink);

// One breaker per key (agent, host, ...), created on first use.
// Thread-safety: all methods are safe from many threads; get() on an existing key takes a shared
// lock only.
class CircuitBreakerRegistry {
 public:
  explicit CircuitBreakerRegistry(CircuitBreakerOptions defaults = {});
  // Options for one key's breaker, used when it is created (existing breakers keep theirs).
  void set_options(std::string key, CircuitBreakerOptions options);
  std::shared_ptr<CircuitBreaker> get(std::string_view key);
  std::shared_ptr<CircuitBreaker> find(std::string_view key) const;
  std::vector<std::shared_ptr<CircuitBreaker>> all() const;
  // Added to every breaker, existing and future.
  void add_listener(CircuitBreaker::Listener listener);

 private:
  mutable std::shared_mutex mu_;
  CircuitBreakerOptions defaults_;
  std::map<std::string, CircuitBreakerOptions, std::less<>> options_;
  std::map<std::string, std::shared_ptr<CircuitBreaker>, std::less<>> breakers_;
  std::vector<CircuitBreaker::Listener> listeners_;
};

}  // namespace mend

#endif  // MEND_CORE_CIRCUIT_BREAKER_H_
