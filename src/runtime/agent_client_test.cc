#include "mend/runtime/agent_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mend/core/env.h"

namespace mend {
namespace {

using ::testing::HasSubstr;

HttpResponse response(int status, std::string body, std::vector<HttpHeader> headers = {}) {
  return {status, std::move(headers), std::move(body)};
}

TEST(TaskRequestBodyTest, WrapsThePayloadWithIdTypeAndAttempt) {
  Task t{.id = "t-1", .type = "code_review", .agent = "a", .payload = R"({"content":"x"})"};
  Result<std::string> body = task_request_body(t, 2);
  ASSERT_TRUE(body.ok());
  nlohmann::json j = nlohmann::json::parse(*body);
  EXPECT_EQ(j["id"], "t-1");
  EXPECT_EQ(j["type"], "code_review");
  EXPECT_EQ(j["attempt"], 2);
  EXPECT_EQ(j["payload"]["content"], "x");
}

TEST(TaskRequestBodyTest, APayloadThatIsNotJsonIsAValidationError) {
  Task t{.id = "t-1", .payload = "{not json"};
  Result<std::string> body = task_request_body(t, 0);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.error().type, ErrorType::validation_failed);
  EXPECT_THAT(body.error().message, HasSubstr("t-1"));
}

TEST(InterpretTaskResponseTest, A2xxJsonBodyIsTheAnswer) {
  Result<std::string> r = interpret_task_response(response(200, R"({ "ok" : true })"), "a");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, R"({"ok":true})");
}

TEST(InterpretTaskResponseTest, A2xxBodyThatIsNotJsonIsAProcessingFailure) {
  Result<std::string> r = interpret_task_response(response(200, "<html>"), "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, ErrorType::processing_failed);
  EXPECT_THAT(r.error().message, HasSubstr("not JSON"));
}

TEST(InterpretTaskResponseTest, TheErrorBodyClassifiesTheError) {
  Result<std::string> r = interpret_task_response(
      response(500, R"({"error":{"type":"memory_exhausted","message":"heap full"}})"), "a");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().classified);
  EXPECT_EQ(r.error().type, ErrorType::memory_exhausted);
  EXPECT_EQ(r.error().severity, Severity::high);  // the type's default
  EXPECT_EQ(r.error().status, 500);
  EXPECT_THAT(r.error().message, HasSubstr("heap full"));
}

TEST(InterpretTaskResponseTest, TheAgentMaySayTheSeverityAndRetryAfter) {
  Result<std::string> r = interpret_task_response(
      response(429, R"({"error":{"type":"rate_limit_exceeded","severity":"high",
                                 "retry_after":2.5}})"),
      "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().severity, Severity::high);
  EXPECT_EQ(r.error().retry_after, from_seconds(2.5));
}

TEST(InterpretTaskResponseTest, WithoutABodyTheStatusAndRetryAfterHeaderDecide) {
  Result<std::string> r =
      interpret_task_response(response(503, "", {{"Retry-After", "7"}}), "agent-x");
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().classified);
  EXPECT_EQ(r.error().retry_after, std::chrono::seconds(7));
  Error e = r.error();
  standard_classifier().classify_in_place(e);
  EXPECT_EQ(e.type, ErrorType::temporary_unavailable);
  // An HTTP date, or garbage, is ignored rather than misread.
  Result<std::string> dated = interpret_task_response(
      response(503, "", {{"Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"}}), "a");
  EXPECT_FALSE(dated.error().retry_after.has_value());
}

TEST(InterpretTaskResponseTest, AnUnknownTypeIsLeftToTheClassifierAndSaid) {
  Result<std::string> r = interpret_task_response(
      response(500, R"({"error":{"type":"cosmic_ray","message":"bit flip"}})"), "a");
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().classified);
  EXPECT_THAT(r.error().message, HasSubstr("unknown error type 'cosmic_ray'"));
}

TEST(InterpretTaskResponseTest, HostileBodiesNeverCrash) {
  for (const char* body : {"", "null", "[]", R"({"error":null})", R"({"error":{"type":7}})",
                           R"({"error":{"retry_after":-4,"severity":[]}})", "\xff\xfe",
                           R"({"error":{"message":"\u0000"}})"}) {
    Result<std::string> r = interpret_task_response(response(500, body), "a");
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_FALSE(r.error().retry_after.has_value()) << body;
  }
}

TEST(InterpretHealthResponseTest, StatusesAndMetrics) {
  ProbeResult healthy = interpret_health_response(
      response(200, R"({"status":"healthy","metrics":{"memory_percent":42.5,"name":"x"}})"));
  EXPECT_TRUE(healthy.answered);
  EXPECT_EQ(healthy.reported, HealthState::healthy);
  EXPECT_EQ(healthy.metrics.at("memory_percent"), 42.5);
  EXPECT_EQ(healthy.metrics.count("name"), 0u);
  ProbeResult sick = interpret_health_response(response(503, R"({"status":"unhealthy"})"));
  EXPECT_TRUE(sick.answered);
  EXPECT_EQ(sick.reported, HealthState::unhealthy);
  EXPECT_FALSE(interpret_health_response(response(500, R"({"status":"healthy"})")).answered);
  // As a k8s HTTP probe: without a status mend can read, 200 passes and 503 fails.
  ProbeResult plain = interpret_health_response(response(200, "ok"));
  EXPECT_TRUE(plain.answered);
  EXPECT_EQ(plain.reported, HealthState::unknown);
  EXPECT_NE(observed_health(plain), HealthState::unhealthy);
  ProbeResult odd = interpret_health_response(response(200, R"({"status":"fine"})"));
  EXPECT_TRUE(odd.answered);
  EXPECT_THAT(odd.detail, HasSubstr("unknown"));
  ProbeResult down = interpret_health_response(response(503, "<html>"));
  EXPECT_EQ(observed_health(down), HealthState::unhealthy);
}

}  // namespace
}  // namespace mend
