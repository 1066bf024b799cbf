#include "mend/core/error.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "mend/core/result.h"

namespace mend {
namespace {

TEST(ErrorTaxonomy, HasTheSpecificationsTwentyTypesInFiveCategories) {
  const std::vector<std::pair<std::string, std::string>> specified = {
      {"network_timeout", "transient"},
      {"connection_reset", "transient"},
      {"rate_limit_exceeded", "transient"},
      {"temporary_unavailable", "transient"},
      {"memory_exhausted", "resource"},
      {"cpu_overload", "resource"},
      {"disk_full", "resource"},
      {"connection_pool_exhausted", "resource"},
      {"validation_failed", "logic"},
      {"processing_failed", "logic"},
      {"data_corruption", "logic"},
      {"business_rule_violation", "logic"},
      {"service_unavailable", "system"},
      {"database_error", "system"},
      {"configuration_error", "system"},
      {"security_error", "system"},
      {"api_error", "external"},
      {"authentication_failed", "external"},
      {"authorization_failed", "external"},
      {"external_service_down", "external"},
  };
  ASSERT_EQ(specified.size(), static_cast<std::size_t>(kErrorTypeCount));
  std::set<std::string_view> seen;
  for (int i = 0; i < kErrorTypeCount; ++i) {
    auto type = static_cast<ErrorType>(i);
    EXPECT_EQ(to_string(type), specified[i].first);
    EXPECT_EQ(to_string(category_of(type)), specified[i].second);
    EXPECT_EQ(parse_error_type(specified[i].first), type);
    seen.insert(to_string(type));
  }
  EXPECT_EQ(seen.size(), 20u);
}

TEST(ErrorTaxonomy, SeveritiesAndCategoriesRoundTrip) {
  for (std::string_view name : {"low", "medium", "high", "critical"}) {
    auto s = parse_severity(name);
    ASSERT_TRUE(s.has_value()) << name;
    EXPECT_EQ(to_string(*s), name);
  }
  for (std::string_view name : {"transient", "resource", "logic", "system", "external"}) {
    auto c = parse_error_category(name);
    ASSERT_TRUE(c.has_value()) << name;
    EXPECT_EQ(to_string(*c), name);
  }
  EXPECT_FALSE(parse_error_type("NETWORK_TIMEOUT").has_value());  // names are exact
  EXPECT_FALSE(parse_error_type("").has_value());
  EXPECT_FALSE(parse_severity("urgent").has_value());
  EXPECT_EQ(to_string(static_cast<ErrorType>(200)), "unknown");
}

TEST(Error, FactoriesRecordWhatWasObserved) {
  Error h = Error::http(429, "", std::chrono::seconds(3));
  EXPECT_EQ(h.kind, "http");
  EXPECT_EQ(h.status, 429);
  EXPECT_EQ(h.message, "HTTP status 429");
  EXPECT_EQ(h.retry_after, std::chrono::seconds(3));
  EXPECT_FALSE(h.classified);

  Error c = Error::from_code(std::make_error_code(std::errc::connection_reset));
  EXPECT_EQ(c.code, std::errc::connection_reset);
  EXPECT_FALSE(c.message.empty());

  Error x = Error::from_exception(std::make_exception_ptr(
      std::system_error(std::make_error_code(std::errc::timed_out), "dial")));
  EXPECT_EQ(x.code, std::errc::timed_out);
  EXPECT_NE(x.message.find("dial"), std::string::npos);
  EXPECT_TRUE(x.exception);

  Error k = Error::classified_as(ErrorType::disk_full, Severity::critical, "full");
  EXPECT_TRUE(k.classified);
  EXPECT_EQ(k.category(), ErrorCategory::resource);
}

TEST(Error, DescribeIsOneReadableLine) {
  Error e = Error::http(503, "agent overloaded", std::chrono::milliseconds(1500));
  e.type = ErrorType::temporary_unavailable;
  e.stop = StopReason::retries_exhausted;
  e.attempts.resize(4);
  EXPECT_EQ(e.describe(),
            "temporary_unavailable/medium: agent overloaded (status 503) (retry after 1.500 s) "
            "[retries_exhausted after 4 attempts]");
}

TEST(Error, ThrowErrorPicksTheExceptionForTheStopReason) {
  auto thrown_as = [](StopReason stop) {
    Error e = Error::classified_as(ErrorType::network_timeout, Severity::medium, "x");
    e.stop = stop;
    try {
      throw_error(e);
    } catch (const CircuitOpenError&) {
      return std::string("circuit");
    } catch (const RetryExhaustedError& ex) {
      EXPECT_EQ(ex.last_error().stop, stop);
      return std::string("exhausted");
    } catch (const BulkheadFullError&) {
      return std::string("bulkhead");
    } catch (const RateLimitedError&) {
      return std::string("rate");
    } catch (const DeadlineExceededError&) {
      return std::string("deadline");
    } catch (const CancelledError&) {
      return std::string("cancelled");
    } catch (const Exception&) {
      return std::string("mend");
    }
    return std::string("none");
  };
  EXPECT_EQ(thrown_as(StopReason::circuit_open), "circuit");
  EXPECT_EQ(thrown_as(StopReason::retries_exhausted), "exhausted");
  EXPECT_EQ(thrown_as(StopReason::retry_budget_exhausted), "exhausted");
  EXPECT_EQ(thrown_as(StopReason::bulkhead_full), "bulkhead");
  EXPECT_EQ(thrown_as(StopReason::rate_limited), "rate");
  EXPECT_EQ(thrown_as(StopReason::deadline_exceeded), "deadline");
  EXPECT_EQ(thrown_as(StopReason::cancelled), "cancelled");
  EXPECT_EQ(thrown_as(StopReason::non_retryable), "mend");
}

TEST(Error, ThrowErrorRethrowsTheOriginalExceptionItPassedOn) {
  Error e = Error::from_exception(std::make_exception_ptr(std::invalid_argument("bad input")));
  e.stop = StopReason::non_retryable;
  EXPECT_THROW(throw_error(e), std::invalid_argument);
}

TEST(Result, HoldsAValueOrAnError) {
  Result<int> ok = 7;
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  EXPECT_EQ(ok.value_or(3), 7);

  Result<int> bad = Error::classified_as(ErrorType::validation_failed, Severity::low, "no");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.value_or(3), 3);
  EXPECT_EQ(bad.error().type, ErrorType::validation_failed);
  EXPECT_THROW(static_cast<void>(bad.value()), Exception);

  Result<void> done;
  EXPECT_TRUE(done.ok());
  Result<void> failed = Error::http(500);
  EXPECT_FALSE(failed.ok());
  EXPECT_THROW(failed.value(), Exception);
}

}  // namespace
}  // namespace mend
