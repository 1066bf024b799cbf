// File: mend/core/error.h
//
// The error taxonomy of the user's specification and mend's error value.
//
// Every failure mend sees becomes an `Error`: what was observed (an exception, an HTTP status, an
// errno, an error kind and message, a Retry-After), how it was classified (one of 20 types in 5
// categories, and one of 4 severities), and, once mend gave up or refused, why (`stop`) and what
// it tried (`attempts`). The names are the specification's lower_snake strings and round-trip:
//
//   mend::Error e = mend::Error::http(503, "agent overloaded");
//   classifier.classify_in_place(e);    // temporary_unavailable / medium
//   assert(mend::to_string(e.type) == "temporary_unavailable");
//   assert(mend::parse_error_type("temporary_unavailable") == e.type);
//
// When to retry: transient types, plus connection_pool_exhausted, are retryable by the
// specification's rule (default_retryable_types() in mend/core/retry.h); the others are raised at
// once.
//
// Thread-safety: `Error` is a value; distinct objects may be used from distinct threads.
#ifndef MEND_CORE_ERROR_H_
#define MEND_CORE_ERROR_H_

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mend/core/clock.h"

namespace mend {

enum class ErrorCategory : std::uint8_t { transient, resource, logic, system, external };

// The specification's 20 types, four per category, in its order.
enum class ErrorType : std::uint8_t {
  // transient
  network_timeout,
  connection_reset,
  rate_limit_exceeded,
  temporary_unavailable,
  // resource
  memory_exhausted,
  cpu_overload,
  disk_full,
  connection_pool_exhausted,
  // logic
  validation_failed,
  processing_failed,
  data_corruption,
  business_rule_violation,
  // system
  service_unavailable,
  database_error,
  configuration_error,
  security_error,
  // external
  api_error,
  authentication_failed,
  authorization_failed,
  external_service_down,
};
inline constexpr int kErrorTypeCount = 20;
inline constexpr int kErrorCategoryCount = 5;

enum class Severity : std::uint8_t { low, medium, high, critical };
inline constexpr int kSeverityCount = 4;

constexpr ErrorCategory category_of(ErrorType type) noexcept {
  return static_cast<ErrorCategory>(static_cast<int>(type) / 4);
}

// A set of error types (a bit set): which to retry, which a breaker ignores, ...
class ErrorTypeSet {
 public:
  constexpr ErrorTypeSet() = default;
  constexpr ErrorTypeSet(std::initializer_list<ErrorType> types) {
    for (ErrorType t : types) add(t);
  }
  constexpr ErrorTypeSet& add(ErrorType t) {
    bits_ |= bit(t);
    return *this;
  }
  constexpr ErrorTypeSet& remove(ErrorType t) {
    bits_ &= ~bit(t);
    return *this;
  }
  constexpr bool contains(ErrorType t) const noexcept { return (bits_ & bit(t)) != 0; }
  constexpr bool empty() const noexcept { return bits_ == 0; }
  constexpr bool operator==(const ErrorTypeSet&) const = default;

 private:
  static constexpr std::uint32_t bit(ErrorType t) { return 1u << static_cast<unsigned>(t); }
  std::uint32_t bits_ = 0;
};

std::string_view to_string(ErrorType type) noexcept;
std::string_view to_string(ErrorCategory category) noexcept;
std::string_view to_string(Severity severity) noexcept;
std::optional<ErrorType> parse_error_type(std::string_view name) noexcept;
std::optional<ErrorCategory> parse_error_category(std::string_view name) noexcept;
std::optional<Severity> parse_severity(std::string_view name) noexcept;

// The severity a type gets when whoever reported it said only the type (an agent's error body
// without "severity"): the specification's where it names one (rate limit low, timeouts and
// connection errors medium, memory, database and authentication high), otherwise mend's reading of
// the type's blast radius: security_error critical; disk_full, data_corruption,
// service_unavailable, configuration_error, authorization_failed, external_service_down high;
// validation_failed and business_rule_violation low; the rest medium. docs/classification.md has
// the table.
Severity default_severity(ErrorType type) noexcept;

// Why mend stopped trying, or refused to try. `none` on an error that mend merely passed on.
enum class StopReason : std::uint8_t {
  none,
  non_retryable,           // the error's type is not retryable: raised at once
  retries_exhausted,       // max_retries retries were made and the last one failed too
  retry_budget_exhausted,  // the retry budget refused a retry (most calls are failing)
  deadline_exceeded,       // the next attempt could not start before the call's deadline
  cancelled,               // the caller's stop token was triggered
  circuit_open,            // rejected by an open (or isolated) circuit breaker
  bulkhead_full,           // rejected: no free slot and no room in the wait queue
  rate_limited,            // rejected by a rate limiter
  agent_unhealthy,         // the agent was marked unhealthy while the retry waited
};
std::string_view to_string(StopReason reason) noexcept;

// One failed attempt, as recorded by the retry loop.
struct Attempt {
  int number = 0;  // 0 for the first call, 1 for the first retry, ...
  ErrorType type = ErrorType::processing_failed;
  Severity severity = Severity::medium;
  Duration delay{};  // the wait before the next attempt; zero when there was none
};

struct Error {
  // --- What was observed -------------------------------------------------------------------
  // A free-form error kind for errors that are not C++ exceptions ("http", "timeout",
  // "database", ...). Classifier rules match on it; kinds may have declared parents.
  std::string kind;
  std::optional<int> status;  // HTTP status code, when there was one
  std::error_code code;       // errno and friends (from std::system_error, or set directly)
  std::string message;
  std::optional<Duration> retry_after;  // the server's own word on when to come back
  std::exception_ptr exception;         // the original exception, when there was one

  // --- How it was classified ---------------------------------------------------------------
  ErrorType type = ErrorType::processing_failed;
  Severity severity = Severity::medium;
  bool classified = false;

  // --- What mend did -----------------------------------------------------------------------
  StopReason stop = StopReason::none;
  std::vector<Attempt> attempts;  // every failed attempt, when a retry loop ran

  ErrorCategory category() const noexcept { return category_of(type); }

  // Factories for the usual observations. None classifies: a Classifier does that.
  static Error http(int status, std::string message = {},
                    std::optional<Duration> retry_after = std::nullopt);
  static Error of_kind(std::string kind, std::string message = {});
  static Error from_code(std::error_code code, std::string message = {});
  static Error from_exception(std::exception_ptr exception);
  // The same from inside a catch block, without rethrowing: message from what(), errno from a
  // std::system_error; a mend::Exception gives back the Error it carries (status, retry_after
  // and classification included), so code can throw mend::Exception(Error::http(503, ...)).
  static Error from_live_exception(const std::exception& live, std::exception_ptr exception);
  // An error whose classification is already known; classifiers leave it as it is.
  static Error classified_as(ErrorType type, Severity severity, std::string message = {});

  // One line for logs: "temporary_unavailable/medium: agent overloaded (status 503)".
  std::string describe() const;
};

// Exceptions that the throwing API raises when mend itself gives up or refuses. An error that
// mend only passed on (non-retryable) is raised as the caller's original exception instead.
class Exception : public std::runtime_error {
 public:
  explicit Exception(Error error);
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

// Retries exhausted, or refused by the retry budget. error() is the last error, with its
// attempts and stop reason.
class RetryExhaustedError : public Exception {
 public:
  using Exception::Exception;
  const Error& last_error() const noexcept { return error(); }
};
// A circuit breaker rejected the call; error().retry_after says when it will let a probe through.
class CircuitOpenError : public Exception {
 public:
  using Exception::Exception;
};
class BulkheadFullError : public Exception {
 public:
  using Exception::Exception;
};
class RateLimitedError : public Exception {
 public:
  using Exception::Exception;
};
class DeadlineExceededError : public Exception {
 public:
  using Exception::Exception;
};
class CancelledError : public Exception {
 public:
  using Exception::Exception;
};

// Raises `error` the way the throwing API does: the exception matching its stop reason, or the
// original exception for errors mend passed on, or mend::Exception when there is none.
[[noreturn]] void throw_error(const Error& error);

}  // namespace mend

#endif  // MEND_CORE_ERROR_H_
