// `mend submit` against a daemon the test starts: the outcome with its attempts, --json, a
// payload from a file, by capability, mistakes; and without waiting, or a wait that runs out.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cli_test_support.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using cli_test_support::CliTest;
using cli_test_support::MendRun;
using cli_test_support::table_rows;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST_F(CliTest, SubmitPrintsTheOutcomeWithItsAttempts) {
  daemon().chaos("reviewer", {{"fail_next", {{{"kind", "503"}, {"count", 1}}}}});
  MendRun human = run({"submit", "--type", "code_review", "--agent", "reviewer", "--payload",
                       R"({"content": "int main() {}\n"})"});
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  EXPECT_THAT(human.out, MatchesRegex("task task-[0-9]+: succeeded_after_retry, answered by "
                                      "reviewer \\([0-9.]+ m?s\\)\n(.|\n)*"));
  const std::string table = human.out.substr(human.out.find("attempts:\n") + 10);
  const auto rows = table_rows(table);
  ASSERT_GE(rows.size(), 3u) << human.out;
  EXPECT_THAT(rows[0], ElementsAre("AGENT", "REPLICA", "ATTEMPT", "RESULT", "HTTP", "DECISION",
                                   "DELAY", "MESSAGE"));
  EXPECT_EQ(rows[1][0], "reviewer");
  EXPECT_EQ(rows[1][2], "0");
  EXPECT_EQ(rows[1][3], "temporary_unavailable/medium");
  EXPECT_EQ(rows[1][4], "503");
  EXPECT_EQ(rows[1][5], "retry");
  EXPECT_EQ(rows[2][2], "1");
  EXPECT_EQ(rows[2][3], "ok");
  EXPECT_THAT(human.out, HasSubstr("\nanswer: {\"agent\":\"reviewer\""));

  // --json, the payload from a file, a chosen id.
  TempDir dir("mend-cli");
  std::ofstream(dir.file("payload.json")) << R"({"content": "line one\nline two\n"})";
  MendRun js = run({"submit", "--type", "code_review", "--agent", "reviewer", "--payload",
                    "@" + dir.file("payload.json"), "--id", "cli-json-1", "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json body = js.out_json();
  EXPECT_EQ(body["id"], "cli-json-1");
  EXPECT_EQ(body["state"], "done");
  EXPECT_EQ(body["outcome"]["status"], "succeeded");
  EXPECT_EQ(body["outcome"]["answer"]["result"]["lines"], 2) << js.out;
  MendRun taken =
      run({"submit", "--type", "code_review", "--agent", "reviewer", "--id", "cli-json-1"});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_THAT(taken.err, HasSubstr("exists already"));

  // By capability, without an agent.
  MendRun planned = run({"submit", "--type", "code_review", "--capability", "paging", "--json"});
  ASSERT_EQ(planned.exit_code, 0) << planned.describe();
  EXPECT_EQ(planned.out_json()["outcome"]["answered_by"], "pager");

  // Mistakes.
  MendRun bad_payload = run({"submit", "--type", "x", "--agent", "reviewer", "--payload", "{bad"});
  EXPECT_EQ(bad_payload.exit_code, 2);
  EXPECT_THAT(bad_payload.err, HasSubstr("--payload is not JSON"));
  EXPECT_EQ(
      run({"submit", "--type", "x", "--agent", "reviewer", "--payload", "@/nonexistent"}).exit_code,
      2);
  EXPECT_EQ(run({"submit", "--type", "x"}).exit_code, 2);  // neither agent nor capability
  MendRun unknown = run({"submit", "--type", "x", "--agent", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("unknown agent 'nobody'"));
  EXPECT_EQ(run({"submit", "--type", "x", "--agent", "reviewer"}, false).exit_code, 4);
}

TEST_F(CliTest, SubmitWithoutWaitingPrintsTheTaskIdAndARunOutWaitExitsSix) {
  MendRun async = run({"submit", "--type", "code_review", "--agent", "reviewer", "--wait", "0",
                       "--id", "cli-async-1"});
  ASSERT_EQ(async.exit_code, 0) << async.describe();
  EXPECT_EQ(async.out, "cli-async-1\n");
  Reply done = daemon().get("/v1/tasks/cli-async-1?wait=10");
  EXPECT_EQ(done.body["state"], "done") << done.text;
  MendRun unnamed = run({"submit", "--type", "code_review", "--agent", "reviewer", "--wait", "0"});
  ASSERT_EQ(unnamed.exit_code, 0) << unnamed.describe();
  EXPECT_THAT(unnamed.out, MatchesRegex("task-[0-9]+\n"));
  EXPECT_EQ(daemon().get("/v1/tasks/" + unnamed.out_lines().at(0) + "?wait=10").body["state"],
            "done");
  MendRun async_json =
      run({"submit", "--type", "code_review", "--agent", "reviewer", "--wait", "0", "--json"});
  ASSERT_EQ(async_json.exit_code, 0) << async_json.describe();
  EXPECT_EQ(async_json.out_json()["state"], "running");
  EXPECT_EQ(daemon()
                .get("/v1/tasks/" + async_json.out_json()["id"].get<std::string>() + "?wait=10")
                .body["state"],
            "done");

  // The backup answers after 1.5 s; waiting 0.3 s runs out.
  daemon().chaos("backup", {{"latency_ms", 1500}});
  MendRun slow = run({"submit", "--type", "code_review", "--agent", "backup", "--wait", "0.3",
                      "--id", "cli-slow-1"});
  EXPECT_EQ(slow.exit_code, 6) << slow.describe();
  EXPECT_THAT(slow.err, HasSubstr("cli-slow-1 is still running"));
  MendRun slow_json =
      run({"submit", "--type", "code_review", "--agent", "backup", "--wait", "0.3", "--json"});
  EXPECT_EQ(slow_json.exit_code, 6) << slow_json.describe();
  EXPECT_EQ(slow_json.out_json()["state"], "running");
  daemon().chaos("backup", {{"latency_ms", 0}});
  // Both end before the next test, which follows the events of its own tasks.
  EXPECT_EQ(daemon().get("/v1/tasks/cli-slow-1?wait=10").body["state"], "done");
  const std::string second = slow_json.out_json()["id"];
  EXPECT_EQ(daemon().get("/v1/tasks/" + second + "?wait=10").body["state"], "done");
}

}  // namespace
}  // namespace mend::testing
