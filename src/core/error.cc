#include "mend/core/error.h"

#include <array>
#include <cstdio>

#include "mend/core/result.h"

namespace mend {
namespace {

constexpr std::array<std::string_view, kErrorTypeCount> kTypeNames = {
    "network_timeout",
    "connection_reset",
    "rate_limit_exceeded",
    "temporary_unavailable",
    "memory_exhausted",
    "cpu_overload",
    "disk_full",
    "connection_pool_exhausted",
    "validation_failed",
    "processing_failed",
    "data_corruption",
    "business_rule_violation",
    "service_unavailable",
    "database_error",
    "configuration_error",
    "security_error",
    "api_error",
    "authentication_failed",
    "authorization_failed",
    "external_service_down",
};
constexpr std::array<std::string_view, kErrorCategoryCount> kCategoryNames = {
    "transient", "resource", "logic", "system", "external"};
constexpr std::array<std::string_view, kSeverityCount> kSeverityNames = {"low", "medium", "high",
                                                                         "critical"};

template <class Enum, std::size_t N>
std::optional<Enum> parse_name(const std::array<std::string_view, N>& names,
                               std::string_view name) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

template <std::size_t N>
std::string_view name_at(const std::array<std::string_view, N>& names, std::size_t i) noexcept {
  return i < N ? names[i] : std::string_view("unknown");
}

}  // namespace

std::string_view to_string(ErrorType type) noexcept {
  return name_at(kTypeNames, static_cast<std::size_t>(type));
}
std::string_view to_string(ErrorCategory category) noexcept {
  return name_at(kCategoryNames, static_cast<std::size_t>(category));
}
std::string_view to_string(Severity severity) noexcept {
  return name_at(kSeverityNames, static_cast<std::size_t>(severity));
}
std::optional<ErrorType> parse_error_type(std::string_view name) noexcept {
  return parse_name<ErrorType>(kTypeNames, name);
}
std::optional<ErrorCategory> parse_error_category(std::string_view name) noexcept {
  return parse_name<ErrorCategory>(kCategoryNames, name);
}
std::optional<Severity> parse_severity(std::string_view name) noexcept {
  return parse_name<Severity>(kSeverityNames, name);
}

std::string_view to_string(StopReason reason) noexcept {
  switch (reason) {
    case StopReason::none:
      return "none";
    case StopReason::non_retryable:
      return "non_retryable";
    case StopReason::retries_exhausted:
      return "retries_exhausted";
    case StopReason::retry_budget_exhausted:
      return "retry_budget_exhausted";
    case StopReason::deadline_exceeded:
      return "deadline_exceeded";
    case StopReason::cancelled:
      return "cancelled";
    case StopReason::circuit_open:
      return "circuit_open";
    case StopReason::bulkhead_full:
      return "bulkhead_full";
    case StopReason::rate_limited:
      return "rate_limited";
    case StopReason::agent_unhealthy:
      return "agent_unhealthy";
  }
  return "unknown";
}

Error Error::http(int status, std::string message, std::optional<Duration> retry_after) {
  Error e;
  e.kind = "http";
  e.status = status;
  e.message = message.empty() ? "HTTP status " + std::to_string(status) : std::move(message);
  e.retry_after = retry_after;
  return e;
}

Error Error::of_kind(std::string kind, std::string message) {
  Error e;
  e.kind = std::move(kind);
  e.message = std::move(message);
  return e;
}

Error Error::from_code(std::error_code code, std::string message) {
  Error e;
  e.code = code;
  e.message = message.empty() ? code.message() : std::move(message);
  return e;
}

Error Error::from_exception(std::exception_ptr exception) {
  Error e;
  e.exception = exception;
  try {
    if (exception) std::rethrow_exception(exception);
  } catch (const Exception& ex) {
    e = ex.error();
    e.exception = exception;
  } catch (const std::system_error& ex) {
    e.code = ex.code();
    e.message = ex.what();
  } catch (const std::exception& ex) {
    e.message = ex.what();
  } catch (...) {
    e.message = "unknown exception";
  }
  return e;
}

Error Error::from_live_exception(const std::exception& live, std::exception_ptr exception) {
  if (const auto* carried = dynamic_cast<const Exception*>(&live)) {
    Error e = carried->error();
    e.exception = std::move(exception);
    return e;
  }
  Error e;
  e.exception = std::move(exception);
  e.message = live.what();
  if (const auto* system = dynamic_cast<const std::system_error*>(&live)) e.code = system->code();
  return e;
}

Error Error::classified_as(ErrorType type, Severity severity, std::string message) {
  Error e;
  e.type = type;
  e.severity = severity;
  e.classified = true;
  e.message = std::move(message);
  return e;
}

std::string Error::describe() const {
  std::string out;
  out.reserve(64 + message.size());
  out.append(to_string(type)).append("/").append(to_string(severity));
  if (!message.empty()) out.append(": ").append(message);
  if (status) out.append(" (status ").append(std::to_string(*status)).append(")");
  if (code)
    out.append(" (")
        .append(code.category().name())
        .append(" ")
        .append(std::to_string(code.value()))
        .append(")");
  if (retry_after) {
    char buf[48];
    std::snprintf(buf, sizeof buf, " (retry after %.3f s)", to_seconds(*retry_after));
    out.append(buf);
  }
  if (stop != StopReason::none) {
    out.append(" [").append(to_string(stop));
    if (!attempts.empty())
      out.append(" after ")
          .append(std::to_string(attempts.size()))
          .append(attempts.size() == 1 ? " attempt" : " attempts");
    out.append("]");
  }
  return out;
}

Error* detail::ErrorSlot::moved_from() noexcept {
  static Error placeholder =
      Error::classified_as(ErrorType::processing_failed, Severity::medium, "moved-from error");
  return &placeholder;
}

Exception::Exception(Error error)
    : std::runtime_error(error.describe()), error_(std::move(error)) {}

void throw_error(const Error& error) {
  switch (error.stop) {
    case StopReason::retries_exhausted:
    case StopReason::retry_budget_exhausted:
      throw RetryExhaustedError(error);
    case StopReason::circuit_open:
      throw CircuitOpenError(error);
    case StopReason::bulkhead_full:
      throw BulkheadFullError(error);
    case StopReason::rate_limited:
      throw RateLimitedError(error);
    case StopReason::deadline_exceeded:
      throw DeadlineExceededError(error);
    case StopReason::cancelled:
      throw CancelledError(error);
    case StopReason::none:
    case StopReason::non_retryable:
    case StopReason::agent_unhealthy:  // the workflow's own decision: the error as it was
      break;
  }
  if (error.exception) std::rethrow_exception(error.exception);
  throw Exception(error);
}

Severity default_severity(ErrorType type) noexcept {
  switch (type) {
    case ErrorType::rate_limit_exceeded:
    case ErrorType::validation_failed:
    case ErrorType::business_rule_violation:
      return Severity::low;
    case ErrorType::memory_exhausted:
    case ErrorType::disk_full:
    case ErrorType::data_corruption:
    case ErrorType::service_unavailable:
    case ErrorType::database_error:
    case ErrorType::configuration_error:
    case ErrorType::authentication_failed:
    case ErrorType::authorization_failed:
    case ErrorType::external_service_down:
      return Severity::high;
    case ErrorType::security_error:
      return Severity::critical;
    default:
      return Severity::medium;
  }
}

}  // namespace mend
