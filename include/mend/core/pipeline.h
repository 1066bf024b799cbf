// File: mend/core/pipeline.h
//
// A pipeline composes policies in the order the caller chooses, outermost first, as Polly's
// resilience pipelines do, and runs calls through them:
//
//   auto breaker =
//       std::make_shared<mend::CircuitBreaker>("agent-a", mend::CircuitBreakerOptions{});
//   mend::Pipeline pipeline = mend::Pipeline::Builder()
//                                 .retry(mend::RetryOptions{})  // outermost: retries ...
//                                 .circuit_breaker(breaker)     // ... each pass the breaker
//                                 .build();
//   std::string answer = pipeline.execute([&] { return agent.ask(task); });          // throws
//   mend::Result<std::string> r = pipeline.try_execute([&] { return agent.ask(task); });
//
// Callables may throw, or return a mend::Result<T> (for code built without exceptions); both are
// classified alike, by env.classifier, at the innermost point. execute() raises what went wrong:
// the original exception for an error mend passed on (not retryable), otherwise the mend
// exception for its stop reason (RetryExhaustedError, CircuitOpenError, ...; see
// mend/core/error.h). try_execute() returns it as a value instead and never throws for a failed
// call.
//
// Order matters. retry -> breaker: every attempt is seen by the breaker, and an open circuit stops
// the retries at once (its error is not retryable). breaker -> retry: the breaker sees one outcome
// per retried call. bulkhead or rate limiter inside retry: a refusal is retried after its wait.
//
// Per call, CallOptions carry a deadline (no attempt starts, and no backoff ends, after it) and a
// stop token (cancels waits and further attempts).
//
// Thread-safety: a built Pipeline is immutable; execute() and try_execute() may run on many
// threads at once. The policies it holds are shared and thread-safe.
#ifndef MEND_CORE_PIPELINE_H_
#define MEND_CORE_PIPELINE_H_

#include <array>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mend/core/bulkhead.h"
#include "mend/core/circuit_breaker.h"
#include "mend/core/classifier.h"
#include "mend/core/env.h"
#include "mend/core/rate_limiter.h"
#include "mend/core/result.h"
#include "mend/core/retry.h"

namespace mend {

// What a call did, for callers that want to know (a successful Result does not say whether it
// needed retries). Filled in only when CallOptions::report points at one.
struct CallReport {
  // Attempts made (1 when no retry was needed). With nested retry stages, the count of the last
  // loop that retried.
  int attempts = 0;
  Duration waited{};  // time spent waiting out backoff
};

struct CallOptions {
  std::optional<TimePoint> deadline;  // on env.clock
  std::stop_token stop;
  const Context* context = nullptr;  // facts for classifier predicates
  CallReport* report = nullptr;      // filled in when set
};

// The breaker permit taken by the flattened success path before the first attempt, handed to the
// breaker stage when that attempt failed and the general path takes over, so that the attempt is
// recorded against the permit it was admitted with. (The flattened path serves pipelines with at
// most one breaker, so there is one permit at most.)
struct FirstAttemptPermit {
  CircuitBreaker::Permit permit;
  bool used = false;
};

// What stages see of the call in progress.
struct CallScope {
  const Env& env;
  const CallOptions& options;
  FirstAttemptPermit* first_attempt = nullptr;

  const Context& context() const noexcept {
    static const Context kEmpty;
    return options.context != nullptr ? *options.context : kEmpty;
  }
  void classify(Error& error, const std::exception* live) const {
    if (live == nullptr && error.exception) {
      env.classifier->classify_in_place(error, context());  // inspects the stored exception
    } else {
      env.classifier->classify_in_place(error, live, context());
    }
  }
};

namespace detail {
template <class R>
struct value_of_result {
  using type = R;
};
template <class T>
struct value_of_result<Result<T>> {
  using type = T;
};
// A stage's result in the shape of the pipeline's result type.
template <class T>
Result<T> error_result(Error error) {
  return Result<T>(std::move(error));
}
Event event_for(EventKind kind, const Env& env, const std::string& source, const Error& error);
}  // namespace detail

// Retries failed attempts of everything inside it (mend/core/retry.h).
class RetryStage {
 public:
  explicit RetryStage(RetryOptions options) : policy_(std::move(options)) {}

  template <class T, class Next>
  Result<T> run(Next& next, const CallScope& scope) const {
    Result<T> r = next();
    if (r.ok()) [[likely]] {
      if (RetryBudget* budget = policy_.options().budget.get()) {
        budget->record_success();
      }
      return r;
    }
    return retry_after_failure<T>(next, scope, std::move(r));
  }

  const RetryPolicy& policy() const noexcept { return policy_; }

 private:
  // What to do about the failed attempt `attempt`; updates the budget and emits the event.
  RetryDecision decide(int attempt, Error& error, Duration previous, const CallScope& scope) const;
  void give_up(Error& error, StopReason stop, std::vector<Attempt> attempts,
               const CallScope& scope) const;

  template <class T, class Next>
  [[gnu::noinline]] Result<T> retry_after_failure(Next& next, const CallScope& scope,
                                                  Result<T> r) const {
    std::vector<Attempt> attempts;
    Duration previous{};
    RetryBudget* budget = policy_.options().budget.get();
    for (int attempt = 0;; ++attempt) {
      Error& error = r.error();
      RetryDecision d = decide(attempt, error, previous, scope);
      attempts.push_back({attempt, error.type, error.severity, d.retry ? d.delay : Duration{}});
      if (!d.retry) {
        give_up(error, d.stop, std::move(attempts), scope);
        return r;
      }
      if (!scope.env.sleeper->sleep_for(d.delay, scope.options.stop)) {
        if (budget) budget->release_retry();
        attempts.back().delay = Duration{};
        give_up(error, StopReason::cancelled, std::move(attempts), scope);
        return r;
      }
      previous = d.delay;
      if (CallReport* report = scope.options.report) {
        report->attempts = attempt + 2;
        report->waited += d.delay;
      }
      r = next();
      if (budget) {
        budget->release_retry();
        if (r.ok()) budget->record_success(/*retry=*/true);
      }
      if (r.ok()) return r;
    }
  }

  RetryPolicy policy_;
};

// Guards everything inside it with a circuit breaker (mend/core/circuit_breaker.h).
class CircuitBreakerStage {
 public:
  explicit CircuitBreakerStage(std::shared_ptr<CircuitBreaker> breaker)
      : breaker_(std::move(breaker)) {}

  template <class T, class Next>
  Result<T> run(Next& next, const CallScope& scope) const {
    CircuitBreaker& breaker = *breaker_;
    const Clock& clock = *scope.env.clock;
    const CircuitBreaker::Permit permit = admit(scope, clock);
    if (!permit.allowed()) [[unlikely]]
      return detail::error_result<T>(reject(permit, scope));
    Result<T> r = next();
    if (r.ok()) [[likely]] {
      breaker.on_success(permit, clock);
    } else {
      record_failure(permit, r.error(), clock);
    }
    return r;
  }

  const std::shared_ptr<CircuitBreaker>& breaker() const noexcept { return breaker_; }

 private:
  // The permit the flattened path took for this breaker before the first attempt, once; else a
  // fresh one.
  CircuitBreaker::Permit admit(const CallScope& scope, const Clock& clock) const {
    if (FirstAttemptPermit* first = scope.first_attempt) [[unlikely]] {
      if (!first->used) {
        first->used = true;
        return first->permit;
      }
    }
    return breaker_->try_acquire(clock);
  }
  Error reject(const CircuitBreaker::Permit& permit, const CallScope& scope) const;
  void record_failure(const CircuitBreaker::Permit& permit, const Error& error,
                      const Clock& clock) const;
  std::shared_ptr<CircuitBreaker> breaker_;
};

// Caps concurrent calls to everything inside it (mend/core/bulkhead.h).
class BulkheadStage {
 public:
  explicit BulkheadStage(std::shared_ptr<Bulkhead> bulkhead) : bulkhead_(std::move(bulkhead)) {}

  template <class T, class Next>
  Result<T> run(Next& next, const CallScope& scope) const {
    const Bulkhead::Admission admission = bulkhead_->enter(scope.options.stop);
    if (admission != Bulkhead::Admission::admitted) [[unlikely]] {
      return detail::error_result<T>(reject(admission, scope));
    }
    struct Leave {
      Bulkhead& b;
      ~Leave() { b.leave(); }
    } leave{*bulkhead_};
    return next();
  }

 private:
  Error reject(Bulkhead::Admission admission, const CallScope& scope) const;
  std::shared_ptr<Bulkhead> bulkhead_;
};

// Limits the rate of calls to everything inside it (mend/core/rate_limiter.h).
class RateLimiterStage {
 public:
  explicit RateLimiterStage(std::shared_ptr<RateLimiter> limiter) : limiter_(std::move(limiter)) {}

  template <class T, class Next>
  Result<T> run(Next& next, const CallScope& scope) const {
    const RateLimiter::Decision d = limiter_->try_acquire(scope.env.clock->now());
    if (!d.allowed) [[unlikely]]
      return detail::error_result<T>(reject(d, scope));
    return next();
  }

 private:
  Error reject(const RateLimiter::Decision& decision, const CallScope& scope) const;
  std::shared_ptr<RateLimiter> limiter_;
};

using Stage = std::variant<RetryStage, CircuitBreakerStage, BulkheadStage, RateLimiterStage>;

class Pipeline {
 public:
  class Builder {
   public:
    Builder& env(const Env& env) {
      env_ = env;
      return *this;
    }
    Builder& retry(RetryOptions options) {
      stages_.emplace_back(std::in_place_type<RetryStage>, std::move(options));
      return *this;
    }
    Builder& circuit_breaker(std::shared_ptr<CircuitBreaker> breaker) {
      stages_.emplace_back(std::in_place_type<CircuitBreakerStage>, std::move(breaker));
      return *this;
    }
    Builder& bulkhead(std::shared_ptr<Bulkhead> bulkhead) {
      stages_.emplace_back(std::in_place_type<BulkheadStage>, std::move(bulkhead));
      return *this;
    }
    Builder& rate_limiter(std::shared_ptr<RateLimiter> limiter) {
      stages_.emplace_back(std::in_place_type<RateLimiterStage>, std::move(limiter));
      return *this;
    }
    Pipeline build() { return Pipeline(env_, std::move(stages_)); }

   private:
    Env env_;
    std::vector<Stage> stages_;
  };

  Pipeline(Env env, std::vector<Stage> stages);

  // The value type a callable produces: T for T() and for Result<T>().
  template <class F>
  using value_of = typename detail::value_of_result<std::invoke_result_t<F&>>::type;

  template <class F>
  Result<value_of<F>> try_execute(F&& f) const {
    return run_call<value_of<F>, /*kPlain=*/true>(f, no_call_options());
  }
  template <class F>
  Result<value_of<F>> try_execute(F&& f, const CallOptions& options) const {
    return run_call<value_of<F>, /*kPlain=*/false>(f, options);
  }

  template <class F>
  value_of<F> execute(F&& f) const {
    using T = value_of<F>;
    if constexpr (!is_result_v<std::invoke_result_t<F&>>) {
      // A throwing callable with no options: call it directly and hand its value back, without
      // wrapping it in a Result on the way.
      // One breaker or none is the common shape; more take the general path.
      switch (fast_shape_) {
        case FastShape::one_consecutive_breaker:
          return execute_direct<true, true, T>(f);
        case FastShape::one_breaker:
          return execute_direct<true, false, T>(f);
        case FastShape::no_breaker:
          return execute_direct<false, false, T>(f);
        case FastShape::none:
          break;
      }
    }
    return value_or_throw(run_call<T, true>(f, no_call_options()));
  }
  template <class F>
  value_of<F> execute(F&& f, const CallOptions& options) const {
    return value_or_throw(run_call<value_of<F>, false>(f, options));
  }

  const Env& env() const noexcept { return env_; }
  const std::vector<Stage>& stages() const noexcept { return stages_; }

 private:
  template <class T>
  static T value_or_throw(Result<T>&& r) {
    if (!r.ok()) [[unlikely]]
      throw_error(r.error());
    if constexpr (!std::is_void_v<T>) return std::move(*r);
  }

  // kPlain: called without options, so there is no deadline, stop token or report to look at.
  template <class T, bool kPlain, class F>
  Result<T> run_call(F& f, const CallOptions& options) const {
    const CallScope scope{env_, options};
    if constexpr (!kPlain) {
      if (options.report != nullptr) *options.report = CallReport{1, {}};
      if (options.deadline || options.stop.stop_possible()) [[unlikely]] {
        if (auto refused = refuse_before_start(scope)) {
          return detail::error_result<T>(std::move(*refused));
        }
      }
    }
    switch (fast_shape_) {
      case FastShape::one_consecutive_breaker:
        return run_flat<true, true, T>(f, scope);
      case FastShape::one_breaker:
        return run_flat<true, false, T>(f, scope);
      case FastShape::no_breaker:
        return run_flat<false, false, T>(f, scope);
      case FastShape::none:
        break;
    }
    return run<T>(0, f, scope);
  }

  // The success path, flattened, for a pipeline of retries and at most one breaker (kBreaker),
  // known at build time to be in consecutive mode or not (kConsecutive): when the breaker is
  // closed, take its permit (without side effects), make the call once, and on success tell the
  // breaker and the budgets. When the breaker is not closed, the general path runs instead; when
  // the call fails, the general path takes over from it, with this permit standing for the first
  // attempt's. The permit is passed by value, so its address never escapes the success path.
  template <bool kBreaker, bool kConsecutive>
  [[gnu::always_inline]] bool admit_flat(CircuitBreaker::Permit& permit) const {
    if constexpr (!kBreaker) {
      return true;
    } else if constexpr (kConsecutive) {
      permit = fast_breaker_->try_acquire_if_closed_consecutive();
    } else {
      permit = fast_breaker_->try_acquire_if_closed(*env_.clock);
    }
    return permit.allowed();
  }
  template <bool kBreaker, bool kConsecutive>
  [[gnu::always_inline]] void record_flat_success(CircuitBreaker::Permit permit) const {
    if constexpr (kBreaker && kConsecutive) {
      fast_breaker_->on_success_consecutive(permit, *env_.clock);
    } else if constexpr (kBreaker) {
      fast_breaker_->on_success(permit, *env_.clock);
    }
    if (fast_budget_count_ == 1) [[likely]] {
      fast_budgets_[0]->record_success();
    } else {
      for (std::size_t i = 0; i < fast_budget_count_; ++i) fast_budgets_[i]->record_success();
    }
  }

  template <bool kBreaker, bool kConsecutive, class T, class F>
  [[gnu::always_inline]] Result<T> run_flat(F& f, const CallScope& scope) const {
    CircuitBreaker::Permit permit{};
    if (!admit_flat<kBreaker, kConsecutive>(permit)) [[unlikely]]
      return run<T>(0, f, scope);
    Result<T> r = invoke<T>(f, scope);
    if (r.ok()) [[likely]] {
      record_flat_success<kBreaker, kConsecutive>(permit);
      return r;
    }
    return continue_after_failure<T>(f, scope.options, std::move(r), permit);
  }

  template <bool kBreaker, bool kConsecutive, class T, class F>
  [[gnu::always_inline]] T execute_direct(F& f) const {
    CircuitBreaker::Permit permit{};
    if (!admit_flat<kBreaker, kConsecutive>(permit)) [[unlikely]] {
      return value_or_throw(run<T>(0, f, CallScope{env_, no_call_options()}));
    }
    // Set once the call has returned: an exception after that comes from recording the success
    // and must reach the caller as it is. Retrying would run a call that succeeded again.
    bool returned = false;
    try {
      if constexpr (std::is_void_v<T>) {
        f();
        returned = true;
        record_flat_success<kBreaker, kConsecutive>(permit);
        return;
      } else {
        T value = f();
        returned = true;
        record_flat_success<kBreaker, kConsecutive>(permit);
        return value;
      }
    } catch (const std::exception& live) {
      if (returned) throw;
      return recover_from_throw<T>(f, &live, permit);
    } catch (...) {
      if (returned) throw;
      return recover_from_throw<T>(f, nullptr, permit);
    }
  }

  static Error capture(const std::exception& live, const CallScope& scope) {
    Error error = Error::from_live_exception(live, std::current_exception());
    scope.classify(error, &live);
    return error;
  }
  static Error capture_unknown(const CallScope& scope) {
    Error error = Error::from_exception(std::current_exception());
    scope.classify(error, nullptr);
    return error;
  }

  // Called from a catch block of execute()'s direct path: the general path from there on.
  template <class T, class F>
  [[gnu::noinline]] T recover_from_throw(F& f, const std::exception* live,
                                         CircuitBreaker::Permit permit) const {
    const CallScope scope{env_, no_call_options()};
    Error error = live != nullptr ? capture(*live, scope) : capture_unknown(scope);
    return value_or_throw(
        continue_after_failure<T>(f, no_call_options(), Result<T>(std::move(error)), permit));
  }

  // Shared by calls without options, so that they do not build and destroy a CallOptions each.
  static const CallOptions& no_call_options() noexcept {
    static const CallOptions none;
    return none;
  }

  // Runs the general path with `first` standing in for the first call's outcome, and the permit
  // it was admitted with standing in for the breaker's first admission.
  template <class T, class F>
  [[gnu::noinline]] Result<T> continue_after_failure(F& f, const CallOptions& options,
                                                     Result<T> first,
                                                     CircuitBreaker::Permit permit) const {
    FirstAttemptPermit first_permit{permit};
    const CallScope scope{env_, options, &first_permit};
    bool replayed = false;
    auto replay = [&]() -> Result<T> {
      if (!replayed) {
        replayed = true;
        return std::move(first);
      }
      return invoke<T>(f, scope);
    };
    return run<T>(0, replay, scope);
  }

  // An error when the call must not start at all (cancelled, or past its deadline).
  std::optional<Error> refuse_before_start(const CallScope& scope) const;

  template <class T, class F>
  Result<T> run(std::size_t i, F& f, const CallScope& scope) const {
    if (i == stages_.size()) return invoke<T>(f, scope);
    auto next = [&] { return run<T>(i + 1, f, scope); };
    return std::visit([&](const auto& stage) { return stage.template run<T>(next, scope); },
                      stages_[i]);
  }

  template <class T, class F>
  static Result<T> invoke(F& f, const CallScope& scope) {
    using R = std::invoke_result_t<F&>;
    try {
      if constexpr (is_result_v<R>) {
        Result<T> r = f();
        if (!r.ok()) [[unlikely]]
          scope.classify(r.error(), nullptr);
        return r;
      } else if constexpr (std::is_void_v<R>) {
        f();
        return Result<void>();
      } else {
        return Result<T>(f());
      }
    } catch (const std::exception& live) {
      return detail::error_result<T>(capture(live, scope));
    } catch (...) {
      return detail::error_result<T>(capture_unknown(scope));
    }
  }

  static constexpr std::size_t kMaxFastBudgets = 4;

  Env env_;
  std::vector<Stage> stages_;
  // Which flattened success path applies: pipelines of retries and at most one breaker.
  enum class FastShape : std::uint8_t { none, no_breaker, one_breaker, one_consecutive_breaker };
  FastShape fast_shape_ = FastShape::none;
  CircuitBreaker* fast_breaker_ = nullptr;  // the one breaker, when the shape has one
  std::size_t fast_budget_count_ = 0;
  std::array<RetryBudget*, kMaxFastBudgets> fast_budgets_{};
};

}  // namespace mend

#endif  // MEND_CORE_PIPELINE_H_
