// How single values are read: durations and sizes (parse_duration, parse_size and the fields
// that use them), and secrets named by an environment variable (token_env, routing_key_env).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <optional>
#include <string>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

using config_test_support::kOneAgent;
using config_test_support::parse;
using config_test_support::problems;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

// --- Secrets from the environment ------------------------------------------------------------

TEST(ConfigEnvironment, TokenEnvReadsTheVariable) {
  ::setenv("MEND_CONFIG_TEST_TOKEN", "s3cret-token", 1);
  ConfigLoad load = parse("server: {token_env: MEND_CONFIG_TEST_TOKEN}\n" + std::string(kOneAgent));
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->server.token, "s3cret-token");

  ::setenv("MEND_CONFIG_TEST_TOKEN", "", 1);
  EXPECT_THAT(
      problems(parse("server: {token_env: MEND_CONFIG_TEST_TOKEN}\n" + std::string(kOneAgent))),
      ElementsAre("1:21: server.token_env: the environment variable "
                  "MEND_CONFIG_TEST_TOKEN is not set (or is empty)"));
  ::unsetenv("MEND_CONFIG_TEST_TOKEN");
  EXPECT_FALSE(
      parse("server: {token_env: MEND_CONFIG_TEST_TOKEN}\n" + std::string(kOneAgent)).ok());
  EXPECT_THAT(problems(parse("server: {token_env: \"A B\"}\n" + std::string(kOneAgent))),
              ElementsAre("1:21: server.token_env: expected an environment variable name "
                          "(letters, digits, _), got 'A B'"));
}

TEST(ConfigEnvironment, RoutingKeyEnvReadsTheVariable) {
  ::setenv("MEND_CONFIG_TEST_PD_KEY", "R0UT1NG", 1);
  ConfigLoad load = parse(std::string(kOneAgent) +
                          "escalation:\n"
                          "  receivers:\n"
                          "    - {name: pd, kind: pagerduty, routing_key_env: "
                          "MEND_CONFIG_TEST_PD_KEY}\n"
                          "  routes: {emergency: [pd]}\n");
  ::unsetenv("MEND_CONFIG_TEST_PD_KEY");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->escalation.receivers[0].routing_key, "R0UT1NG");
  EXPECT_EQ(load.config->escalation.receivers[0].url, "");  // the receiver's default
  EXPECT_THAT(load.config->escalation.routes.at("emergency"), ElementsAre("pd"));
}

// --- Durations and sizes --------------------------------------------------------------------

TEST(ParseDuration, AcceptsUnitsCompoundsAndBareSeconds) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("10m"), minutes(10));
  EXPECT_EQ(parse_duration("2h"), hours(2));
  EXPECT_EQ(parse_duration("1d"), hours(24));
  EXPECT_EQ(parse_duration("1h30m"), minutes(90));
  EXPECT_EQ(parse_duration("1m0.5s"), milliseconds(60500));
  EXPECT_EQ(parse_duration("90"), seconds(90));
  EXPECT_EQ(parse_duration("0.25"), milliseconds(250));
  EXPECT_EQ(parse_duration("0"), Duration::zero());
}

TEST(ParseDuration, RejectsEverythingElse) {
  for (const char* bad : {"", "abc", "10 s", "-1s", "-5", "1.", ".5", "10x", "s", "1e3", "1h-30m",
                          "5S", "1.5.5s", "9999999999d", " 1s"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << bad;
  }
}

TEST(ParseSize, AcceptsDecimalAndBinaryUnits) {
  EXPECT_EQ(parse_size("512MiB"), std::size_t{512} << 20);
  EXPECT_EQ(parse_size("64KiB"), std::size_t{64} << 10);
  EXPECT_EQ(parse_size("1GB"), std::size_t{1'000'000'000});
  EXPECT_EQ(parse_size("2GiB"), std::size_t{2} << 30);
  EXPECT_EQ(parse_size("1000"), std::size_t{1000});
  EXPECT_EQ(parse_size("1000B"), std::size_t{1000});
  EXPECT_EQ(parse_size("1.5KiB"), std::size_t{1536});
  EXPECT_EQ(parse_size("1kb"), std::size_t{1000});
  EXPECT_EQ(parse_size("0"), std::size_t{0});
}

TEST(ParseSize, RejectsEverythingElse) {
  for (const char* bad :
       {"", "MiB", "1 GB", "1PB", "-1", "1e9", "99999999TiB", "12 parsecs", "0x10", "1.KiB"}) {
    EXPECT_EQ(parse_size(bad), std::nullopt) << bad;
  }
}

TEST(ConfigValues, DurationAndSizeFieldsUseTheParsers) {
  ConfigLoad load = parse(
      "server: {max_body_bytes: 64KiB, read_timeout: 1.5, drain_timeout: 0}\n"
      "agents:\n"
      "  - {name: a, command: x, memory_limit: 1.5GiB, stop_timeout: 1m30s}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->server.max_body_bytes, std::size_t{64} << 10);
  EXPECT_EQ(load.config->server.read_timeout, milliseconds(1500));
  EXPECT_EQ(load.config->server.drain_timeout, Duration::zero());
  EXPECT_EQ(load.config->agents[0].memory_limit_bytes, std::size_t{3} << 29);
  EXPECT_EQ(load.config->agents[0].stop_timeout, seconds(90));
  EXPECT_THAT(
      problems(parse("agents:\n  - {name: a, command: x, memory_limit: 1KiB}\n")),
      ElementsAre("2:41: agents[0].memory_limit: must be at least 1048576 bytes, got 1KiB"));
}

}  // namespace
}  // namespace mend
