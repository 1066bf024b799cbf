#include "mend/runtime/notifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mend/runtime/http_client.h"
#include "mend_test/io_loop.h"
#include "mend_test/ports.h"

namespace mend {
namespace {

using ::testing::HasSubstr;

std::string payload(std::string event, std::string level = "critical") {
  return nlohmann::json{{"event", event},
                        {"record", "INC-3"},
                        {"record_id", 3},
                        {"level", level},
                        {"title", "CRITICAL: security_error on agent-a"},
                        {"description", "token leaked"},
                        {"agent", "agent-a"},
                        {"task_type", "deployment"},
                        {"error_type", "security_error"},
                        {"fingerprint", "00ff00ff00ff00ff"},
                        {"occurrences", 12},
                        {"actor", "alice"},
                        {"sla_due", "2026-01-01T00:15:00.000Z"},
                        {"war_room_url", "https://war.test/INC-3"}}
      .dump();
}

TEST(PagerDutyBodyTest, TriggerCarriesSeverityDedupKeyAndWarRoomLink) {
  Result<std::string> body = pagerduty_body(payload("trigger"), "key-1");
  ASSERT_TRUE(body.ok());
  nlohmann::json j = nlohmann::json::parse(*body);
  EXPECT_EQ(j["routing_key"], "key-1");
  EXPECT_EQ(j["event_action"], "trigger");
  EXPECT_EQ(j["dedup_key"], "mend-00ff00ff00ff00ff-3");
  EXPECT_EQ(j["payload"]["severity"], "critical");
  EXPECT_EQ(j["payload"]["source"], "agent-a");
  EXPECT_THAT(j["payload"]["summary"].get<std::string>(), HasSubstr("INC-3"));
  EXPECT_EQ(j["links"][0]["href"], "https://war.test/INC-3");
}

TEST(PagerDutyBodyTest, AcknowledgeAndResolveCarryOnlyTheKey) {
  for (const char* event : {"acknowledge", "resolve"}) {
    nlohmann::json j = nlohmann::json::parse(*pagerduty_body(payload(event), "k"));
    EXPECT_EQ(j["event_action"], event);
    EXPECT_EQ(j["dedup_key"], "mend-00ff00ff00ff00ff-3");
    EXPECT_FALSE(j.contains("payload"));
  }
  // A re-escalation updates the same alert.
  nlohmann::json j = nlohmann::json::parse(*pagerduty_body(payload("reescalate"), "k"));
  EXPECT_EQ(j["event_action"], "trigger");
}

TEST(PagerDutyBodyTest, SeverityMapping) {
  EXPECT_EQ(pagerduty_severity(Severity::critical), "critical");
  EXPECT_EQ(pagerduty_severity(Severity::high), "error");
  EXPECT_EQ(pagerduty_severity(Severity::medium), "warning");
  EXPECT_EQ(pagerduty_severity(Severity::low), "info");
  nlohmann::json j = nlohmann::json::parse(*pagerduty_body(payload("trigger", "high"), "k"));
  EXPECT_EQ(j["payload"]["severity"], "error");
}

TEST(SlackBodyTest, SaysWhatHappenedWithTheWarRoom) {
  nlohmann::json opened = nlohmann::json::parse(*slack_body(payload("trigger")));
  EXPECT_THAT(opened["text"].get<std::string>(), HasSubstr("INC-3 opened"));
  EXPECT_THAT(opened["blocks"][1]["text"]["text"].get<std::string>(),
              HasSubstr("<https://war.test/INC-3>"));
  nlohmann::json acked = nlohmann::json::parse(*slack_body(payload("acknowledge")));
  EXPECT_THAT(acked["text"].get<std::string>(), HasSubstr("acknowledged by alice"));
  nlohmann::json raised = nlohmann::json::parse(*slack_body(payload("reescalate")));
  EXPECT_THAT(raised["text"].get<std::string>(), HasSubstr("re-escalated"));
}

TEST(NotificationBodiesTest, BadPayloadsAreErrorsNotCrashes) {
  for (const char* bad : {"", "[]", "{}", R"({"event":7})", "\xff"}) {
    EXPECT_FALSE(slack_body(bad).ok()) << bad;
    EXPECT_FALSE(pagerduty_body(bad, "k").ok()) << bad;
  }
}

TEST(FileReceiverTest, AppendsOneJsonLinePerMessage) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("mend-notify-" + std::to_string(::getpid()) + ".jsonl"))
                               .string();
  std::filesystem::remove(path);
  {
    FileReceiver file("log", path);
    OutboxMessage m;
    m.dedup_key = "3:trigger";
    m.event = "trigger";
    m.payload = payload("trigger");
    ASSERT_TRUE(file.deliver(m).ok());
    m.dedup_key = "3:resolve";
    m.event = "resolve";
    m.payload = "not json";  // kept as a string, never lost
    ASSERT_TRUE(file.deliver(m).ok());
  }
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
      << "created readable by its owner only";
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> lines;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["delivery_key"], "3:trigger");
  EXPECT_EQ(lines[0]["notification"]["record"], "INC-3");
  EXPECT_EQ(lines[1]["notification"], "not json");
  std::filesystem::remove(path);
  FileReceiver nowhere("log", "/nonexistent-dir/x.jsonl");
  EXPECT_FALSE(nowhere.deliver(OutboxMessage{}).ok());
}

TEST(WebhookReceiverTest, AFailedDeliveryNamesOnlyTheReceiversOriginNeverItsSecretPathOrPassword) {
  mend::testing::RefusingPort nobody;
  mend::testing::IoLoop io;
  HttpClient http(io.executor());
  const std::string origin = nobody.url();
  for (const std::string& url :
       {origin + "/services/T000/B000/SeCrEtKeY", "http://alice:hunter2@" +
                                                      origin.substr(std::string("http://").size()) +
                                                      "/hook?token=SeCrEtKeY"}) {
    WebhookReceiver hook("hook", http, url);
    Result<void> sent = hook.deliver(OutboxMessage{});
    ASSERT_FALSE(sent.ok());
    const std::string text = sent.error().describe();
    EXPECT_EQ(text.find("SeCrEtKeY"), std::string::npos) << text;
    EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
    EXPECT_NE(text.find("127.0.0.1"), std::string::npos) << "it still says where: " << text;
  }
}

TEST(UrlRedaction, CredentialsAndSecretPathsStayOutOfMessages) {
  EXPECT_EQ(without_credentials("https://user:pw@example.com:8443/a?b=c"),
            "https://***@example.com:8443/a?b=c");
  EXPECT_EQ(without_credentials("http://example.com/a@b"), "http://example.com/a@b");
  EXPECT_EQ(without_credentials("not a url"), "not a url");
  EXPECT_EQ(url_origin("https://user:pw@hooks.slack.com/services/T/B/X"),
            "https://hooks.slack.com");
  EXPECT_EQ(url_origin("http://[::1]:8080?x"), "http://[::1]:8080");
  EXPECT_EQ(url_origin("hooks.slack.com/x"), "");
}

}  // namespace
}  // namespace mend
