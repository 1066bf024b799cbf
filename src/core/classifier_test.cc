#include "mend/core/classifier.h"

#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <system_error>

namespace mend {
namespace {

using T = ErrorType;
using S = Severity;

Classification of_exception(const Classifier& c, const std::exception& ex) {
  Error e = Error::from_live_exception(ex, nullptr);
  return c.classify(e, &ex, {});
}

void expect(Classification c, ErrorType type, Severity severity) {
  EXPECT_EQ(to_string(c.type), to_string(type)) << "rule: " << c.rule;
  EXPECT_EQ(to_string(c.severity), to_string(severity)) << "rule: " << c.rule;
}

struct DatabaseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct DeadlockError : DatabaseError {
  using DatabaseError::DatabaseError;
};

TEST(StandardClassifier, ReproducesTheSpecificationsTable) {
  const Classifier c = Classifier::standard();
  // (httpx.TimeoutException, None) and (httpx.ConnectError, None)
  expect(of_exception(c, std::system_error(std::make_error_code(std::errc::timed_out))),
         T::network_timeout, S::medium);
  expect(of_exception(c, std::system_error(std::make_error_code(std::errc::connection_refused))),
         T::connection_reset, S::medium);
  expect(c.classify(Error::of_kind("timeout")), T::network_timeout, S::medium);
  expect(c.classify(Error::of_kind("connect")), T::connection_reset, S::medium);
  // (HTTPStatusError, 429) and (HTTPStatusError, 503)
  expect(c.classify(Error::http(429)), T::rate_limit_exceeded, S::low);
  expect(c.classify(Error::http(503)), T::temporary_unavailable, S::medium);
  // MemoryError, asyncio.QueueFull, DatabaseError, AuthenticationError
  expect(of_exception(c, std::bad_alloc()), T::memory_exhausted, S::high);
  expect(c.classify(Error::of_kind("queue_full")), T::connection_pool_exhausted, S::medium);
  expect(c.classify(Error::of_kind("database")), T::database_error, S::high);
  expect(c.classify(Error::of_kind("authentication")), T::authentication_failed, S::high);
  // Keywords, case-insensitively, in the specification's order.
  expect(c.classify(Error::of_kind("", "Request TIMED OUT after 30s")), T::network_timeout,
         S::medium);
  expect(c.classify(Error::of_kind("", "java.lang.OutOfMemoryError: out of memory")),
         T::memory_exhausted, S::high);
  expect(c.classify(Error::of_kind("", "Connection refused by peer")), T::connection_reset,
         S::medium);
  expect(c.classify(Error::of_kind("", "timeout while opening connection")), T::network_timeout,
         S::medium);
  // Default.
  Classification d = c.classify(Error::of_kind("", "the model returned nonsense"));
  expect(d, T::processing_failed, S::medium);
  EXPECT_EQ(d.rule, "default");
}

TEST(StandardClassifier, MapsErrnoWhateverCarriesIt) {
  const Classifier c = Classifier::standard();
  expect(c.classify(Error::from_code(std::make_error_code(std::errc::connection_reset))),
         T::connection_reset, S::medium);
  // errno in the system category compares equal to the std::errc condition.
  expect(of_exception(c, std::system_error(ECONNRESET, std::system_category())),
         T::connection_reset, S::medium);
  expect(of_exception(c, std::system_error(ENOSPC, std::generic_category())), T::disk_full,
         S::high);
  expect(of_exception(c, std::system_error(EMFILE, std::system_category())),
         T::connection_pool_exhausted, S::medium);
  expect(of_exception(c, std::system_error(EACCES, std::system_category())), T::security_error,
         S::high);
}

TEST(StandardClassifier, MapsHttpStatuses) {
  const Classifier c = Classifier::standard();
  expect(c.classify(Error::http(401)), T::authentication_failed, S::high);
  expect(c.classify(Error::http(403)), T::authorization_failed, S::high);
  expect(c.classify(Error::http(400)), T::validation_failed, S::low);
  expect(c.classify(Error::http(500)), T::processing_failed, S::medium);
  expect(c.classify(Error::http(502)), T::temporary_unavailable, S::medium);
  expect(c.classify(Error::http(504)), T::network_timeout, S::medium);
  // A status with no rule falls through to keywords and then the default.
  expect(c.classify(Error::http(418, "I'm a teapot")), T::processing_failed, S::medium);
  EXPECT_EQ(c.classify(Error::http(429)).rule, "any status 429");
}

TEST(Classifier, ExactSubjectAndCodeBeatSubjectAloneWhichBeatsCodeAlone) {
  Classifier c;
  c.on_status(503, T::temporary_unavailable, S::medium);
  c.on_kind("billing", T::api_error, S::medium);
  c.on_kind("billing", 503, T::external_service_down, S::high);
  expect(c.classify(Error::http(503)), T::temporary_unavailable, S::medium);
  Error billing503 = Error::http(503);
  billing503.kind = "billing";
  expect(c.classify(billing503), T::external_service_down, S::high);
  Error billing500 = Error::http(500);
  billing500.kind = "billing";
  expect(c.classify(billing500), T::api_error, S::medium);
}

TEST(Classifier, RegisteredExceptionMatchesSubclassesButExactTypeWins) {
  Classifier c;
  c.on_exception<DatabaseError>(T::database_error, S::high);  // added first
  c.on_exception<DeadlockError>(T::temporary_unavailable, S::medium);
  expect(of_exception(c, DatabaseError("x")), T::database_error, S::high);
  expect(of_exception(c, DeadlockError("x")), T::temporary_unavailable, S::medium);

  Classifier base_only;
  base_only.on_exception<DatabaseError>(T::database_error, S::high);
  expect(of_exception(base_only, DeadlockError("deadlock detected")), T::database_error, S::high);
  // Unrelated exceptions do not match.
  expect(of_exception(base_only, std::runtime_error("x")), T::processing_failed, S::medium);
}

TEST(Classifier, ExceptionWithCodeBeatsExceptionAlone) {
  Classifier c;
  c.on_exception<std::system_error>(T::service_unavailable, S::high);
  c.on_exception<std::system_error>(std::errc::timed_out, T::network_timeout, S::low);
  expect(of_exception(c, std::system_error(std::make_error_code(std::errc::timed_out))),
         T::network_timeout, S::low);
  expect(of_exception(c, std::system_error(std::make_error_code(std::errc::io_error))),
         T::service_unavailable, S::high);
}

TEST(Classifier, BaseKindsAreDeclaredParents) {
  Classifier c;
  c.on_kind("database", T::database_error, S::high);
  c.declare_kind("postgres", "database").declare_kind("postgres.deadlock", "postgres");
  expect(c.classify(Error::of_kind("postgres.deadlock")), T::database_error, S::high);
  // A cycle in declarations does not hang.
  c.declare_kind("a", "b").declare_kind("b", "a");
  expect(c.classify(Error::of_kind("a")), T::processing_failed, S::medium);
}

TEST(Classifier, PredicatesComeFirstAndSeeTheContext) {
  Classifier c = Classifier::standard();
  c.on_predicate(
      "payments are critical",
      [](const Error& e, const Context& ctx) {
        auto it = ctx.find("agent");
        return it != ctx.end() && it->second == "payments" && e.status && *e.status >= 500;
      },
      T::service_unavailable, S::critical);
  Context payments{{"agent", "payments"}};
  expect(c.classify(Error::http(503), payments), T::service_unavailable, S::critical);
  expect(c.classify(Error::http(503), Context{{"agent", "search"}}), T::temporary_unavailable,
         S::medium);
}

TEST(Classifier, KeywordsRankBelowCodes) {
  Classifier c = Classifier::standard();
  // "timeout" is in the message, but the 429 decides.
  expect(c.classify(Error::http(429, "quota timeout")), T::rate_limit_exceeded, S::low);
}

TEST(Classifier, PreclassifiedErrorsKeepTheirClassification) {
  Classifier c = Classifier::standard();
  Error e = Error::classified_as(T::data_corruption, S::critical, "timeout");
  expect(c.classify(e), T::data_corruption, S::critical);
  c.classify_in_place(e);
  EXPECT_EQ(e.type, T::data_corruption);
}

TEST(Classifier, StoredExceptionPointerIsInspected) {
  Classifier c = Classifier::standard();
  Error e = Error::from_exception(std::make_exception_ptr(std::bad_alloc()));
  c.classify_in_place(e);
  EXPECT_EQ(e.type, T::memory_exhausted);
  EXPECT_EQ(e.severity, S::high);
  EXPECT_TRUE(e.classified);
}

TEST(Classifier, SetDefault) {
  Classifier c;
  c.set_default(T::api_error, S::low);
  expect(c.classify(Error::of_kind("", "???")), T::api_error, S::low);
}

TEST(RuleSpec, ValidDescriptionsAddRules) {
  Classifier c;
  ASSERT_TRUE(c.add({.kind = "vector_db", .type = "database_error", .severity = "high"}).ok());
  ASSERT_TRUE(c.add({.status = 418, .type = "validation_failed", .severity = "low"}).ok());
  ASSERT_TRUE(
      c.add({.errno_name = "EPIPE", .type = "connection_reset", .severity = "medium"}).ok());
  ASSERT_TRUE(
      c.add({.exception = "std::out_of_range", .type = "data_corruption", .severity = "critical"})
          .ok());
  ASSERT_TRUE(c.add({.keywords = {"GPU"}, .type = "cpu_overload", .severity = "high"}).ok());
  EXPECT_EQ(c.rule_count(), 5u);
  expect(c.classify(Error::of_kind("vector_db")), T::database_error, S::high);
  expect(c.classify(Error::http(418)), T::validation_failed, S::low);
  expect(c.classify(Error::from_code(std::make_error_code(std::errc::broken_pipe))),
         T::connection_reset, S::medium);
  expect(of_exception(c, std::out_of_range("idx")), T::data_corruption, S::critical);
  expect(c.classify(Error::of_kind("", "gpu melted")), T::cpu_overload, S::high);
}

TEST(RuleSpec, MalformedDescriptionsSayWhatIsWrongAndAddNothing) {
  struct Case {
    RuleSpec spec;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{.kind = "x", .type = "network_timout", .severity = "low"},
       "field 'type': unknown error type \"network_timout\""},
      {{.kind = "x", .severity = "low"}, "field 'type' is required"},
      {{.kind = "x", .type = "api_error"}, "field 'severity' is required"},
      {{.kind = "x", .type = "api_error", .severity = "urgent"},
       "field 'severity': unknown severity \"urgent\""},
      {{.exception = "std::bad_alloc", .kind = "x", .type = "api_error", .severity = "low"},
       "'exception' and 'kind' exclude each other"},
      {{.status = 503, .errno_name = "EPIPE", .type = "api_error", .severity = "low"},
       "'status' and 'errno' exclude each other"},
      {{.status = 99, .type = "api_error", .severity = "low"}, "99 is not an HTTP status code"},
      {{.errno_name = "ETIMEOUT", .type = "api_error", .severity = "low"},
       "unknown errno name \"ETIMEOUT\""},
      {{.exception = "MyError", .type = "api_error", .severity = "low"},
       "unknown exception \"MyError\""},
      {{.kind = "x", .keywords = {"a"}, .type = "api_error", .severity = "low"},
       "'keywords' cannot be combined"},
      {{.keywords = {""}, .type = "api_error", .severity = "low"}, "a keyword is empty"},
      {{.type = "api_error", .severity = "low"}, "a rule needs one of"},
  };
  Classifier c;
  for (const Case& k : cases) {
    Result<void> r = c.add(k.spec);
    ASSERT_FALSE(r.ok()) << k.expected;
    EXPECT_EQ(r.error().type, T::configuration_error);
    EXPECT_NE(r.error().message.find(k.expected), std::string::npos)
        << "got: " << r.error().message << "\nwanted: " << k.expected;
  }
  EXPECT_EQ(c.rule_count(), 0u);
}

TEST(RuleSpec, ExceptionsRegisteredByNameAreUsable) {
  Classifier c;
  c.name_exception<DatabaseError>("app::DatabaseError");
  ASSERT_TRUE(
      c.add({.exception = "app::DatabaseError", .type = "database_error", .severity = "high"})
          .ok());
  expect(of_exception(c, DeadlockError("x")), T::database_error, S::high);
  EXPECT_EQ(of_exception(c, DeadlockError("x")).rule, "exception app::DatabaseError");
}

TEST(ErrnoNames, ParseKnownNames) {
  EXPECT_EQ(parse_errno_name("ETIMEDOUT"), std::errc::timed_out);
  EXPECT_EQ(parse_errno_name("ECONNRESET"), std::errc::connection_reset);
  EXPECT_FALSE(parse_errno_name("etimedout").has_value());
}

}  // namespace
}  // namespace mend
