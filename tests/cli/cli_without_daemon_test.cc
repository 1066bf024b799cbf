// The operator's commands run as the real `mend` binary without a daemon to talk to: the help
// of `mend` and of each command, a wrong command line (exit 2), and a daemon that refuses or
// never answers (exit 3, one line that says so).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "cli_test_support.h"
#include "mend_test/ports.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using cli_test_support::mend;
using cli_test_support::MendRun;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

TEST(CliHelp, TopLevelHelpListsEveryCommandAndTheExitStatuses) {
  MendRun help = mend({"--help"});
  ASSERT_EQ(help.exit_code, 0) << help.describe();
  for (const char* command : {"serve", "demo", "agents", "circuits", "tickets", "incidents", "ack",
                              "resolve", "submit", "events", "check-config"}) {
    EXPECT_THAT(help.out, MatchesRegex("(.|\n)*\n  " + std::string(command) + " +[^ ](.|\n)*"))
        << command;
  }
  EXPECT_THAT(help.out, HasSubstr("Exit status:"));
  EXPECT_THAT(help.out, HasSubstr("3  the daemon could not be reached"));
  EXPECT_THAT(help.out, HasSubstr("4  the daemon refused the token"));
  EXPECT_THAT(help.out, HasSubstr("MEND_ADDRESS"));
}

TEST(CliHelp, EachCommandHelpShowsItsOptions) {
  MendRun submit = mend({"submit", "--help"});
  ASSERT_EQ(submit.exit_code, 0) << submit.describe();
  for (const char* option :
       {"--type", "--agent", "--capability", "--payload", "--id", "--deadline", "--wait",
        "--address", "--token", "--json", "--timeout", "MEND_ADDRESS", "MEND_API_TOKEN"}) {
    EXPECT_THAT(submit.out, HasSubstr(option));
  }
  MendRun events = mend({"events", "--help"});
  ASSERT_EQ(events.exit_code, 0) << events.describe();
  for (const char* option : {"--replay", "--count", "--for", "--kind", "--json"}) {
    EXPECT_THAT(events.out, HasSubstr(option));
  }
  MendRun circuits = mend({"circuits", "--help"});
  ASSERT_EQ(circuits.exit_code, 0);
  EXPECT_THAT(circuits.out, HasSubstr("open|close NAME"));
  MendRun ack = mend({"ack", "--help"});
  ASSERT_EQ(ack.exit_code, 0);
  EXPECT_THAT(ack.out, HasSubstr("--by"));
  EXPECT_THAT(ack.out, HasSubstr("TKT-3, INC-7"));
}

TEST(CliHelp, AWrongCommandLineExitsTwo) {
  EXPECT_EQ(mend({}).exit_code, 2);
  EXPECT_EQ(mend({"nonsense"}).exit_code, 2);
  MendRun bogus = mend({"agents", "--bogus"});
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_THAT(bogus.err, HasSubstr("--bogus"));
  EXPECT_EQ(mend({"tickets", "--status", "sideways"}).exit_code, 2);
  EXPECT_EQ(mend({"events", "--replay", "300"}).exit_code, 2);
  EXPECT_EQ(mend({"circuits", "toggle", "reviewer"}).exit_code, 2);
  EXPECT_EQ(mend({"submit", "--agent", "reviewer"}).exit_code, 2);  // no --type
  EXPECT_EQ(mend({"ack"}).exit_code, 2);                            // no id
  EXPECT_EQ(mend({"agents", "--timeout", "-1"}).exit_code, 2);
}

TEST(CliUnreachable, EveryCommandSaysTheDaemonCannotBeReachedAndExitsThree) {
  RefusingPort nobody;
  const std::vector<std::vector<std::string>> commands = {
      {"agents"},
      {"agents", "reviewer", "--json"},
      {"circuits"},
      {"circuits", "open", "reviewer"},
      {"tickets"},
      {"incidents", "--json"},
      {"ack", "TKT-1"},
      {"resolve", "INC-1"},
      {"submit", "--type", "code_review", "--agent", "reviewer"},
      {"events", "--count", "1"}};
  for (std::vector<std::string> args : commands) {
    args.insert(args.end(), {"--address", nobody.url()});
    MendRun run = mend(args);
    const std::string what = args[0] + " " + args[1];
    EXPECT_EQ(run.exit_code, 3) << what << ": " << run.describe();
    EXPECT_THAT(run.out, IsEmpty()) << what;
    EXPECT_THAT(run.err, StartsWith("mend: cannot reach mend at " + nobody.url() + ": ")) << what;
    EXPECT_THAT(run.err, HasSubstr("onnection refused")) << what;
    EXPECT_THAT(run.err, HasSubstr("is `mend serve` running there?")) << what;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << what << ": one line";
  }
  // The address from the environment.
  MendRun env = mend({"agents"}, {{"MEND_ADDRESS", nobody.url()}});
  EXPECT_EQ(env.exit_code, 3);
  EXPECT_THAT(env.err, HasSubstr(nobody.url()));
}

TEST(CliUnreachable, ADaemonThatNeverAnswersTimesOutWithExitThree) {
  SilentPort silent;
  for (std::vector<std::string> args :
       {std::vector<std::string>{"agents"}, std::vector<std::string>{"events", "--count", "1"}}) {
    args.insert(args.end(), {"--address", silent.url(), "--timeout", "0.5"});
    const auto started = std::chrono::steady_clock::now();
    MendRun run = mend(args);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_EQ(run.exit_code, 3) << args[0] << ": " << run.describe();
    EXPECT_THAT(run.err, StartsWith("mend: cannot reach mend at " + silent.url()));
    EXPECT_LT(took, 5.0) << args[0];
  }
}

}  // namespace
}  // namespace mend::testing
