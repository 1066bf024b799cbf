// `mend agents` and `mend circuits` against a daemon the test starts: every agent and one with
// its replicas as the API sees them, and a circuit the operator opens (with the token) and
// closes; human tables and --json.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli_test_support.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using cli_test_support::CliTest;
using cli_test_support::MendRun;
using cli_test_support::row_of;
using cli_test_support::SharedDaemon;
using cli_test_support::table_rows;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

TEST_F(CliTest, AgentsListsEveryAgentAsTheApiSeesIt) {
  MendRun human = run({"agents"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const json api = daemon().get("/v1/agents").body;
  const auto rows = table_rows(human.out);
  ASSERT_EQ(rows.size(), 4u) << human.out;
  EXPECT_THAT(rows[0], ElementsAre("NAME", "HEALTH", "CIRCUIT", "IN FLIGHT", "READY", "CALLS",
                                   "FAILURES", "RETRIES", "RESTARTS"));
  for (const json& a : api["agents"]) {
    const std::string name = a["name"];
    const auto row = row_of(rows, name);
    ASSERT_EQ(row.size(), 9u) << name << " in\n" << human.out;
    EXPECT_EQ(row[1], a["health"]) << name;
    EXPECT_EQ(row[2], a["circuit"]["state"]) << name;
    EXPECT_THAT(row[3], MatchesRegex("[0-9]+/-")) << name;  // no concurrency limit configured
    EXPECT_EQ(row[4], "1/1") << name;
    EXPECT_EQ(row[8], std::to_string(a["counters"]["restarts"].get<int>())) << name;
  }

  MendRun js = run({"agents", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json listed = js.out_json();
  ASSERT_TRUE(listed.is_object()) << js.out;
  std::vector<std::string> names;
  for (const json& a : listed["agents"]) names.push_back(a["name"]);
  EXPECT_THAT(names, ElementsAre("reviewer", "backup", "pager"));
  EXPECT_EQ(listed["agents"][0]["replicas"][0]["pid"], api["agents"][0]["replicas"][0]["pid"]);
}

TEST_F(CliTest, AgentsNameShowsOneAgentWithItsReplicas) {
  const json api = daemon().agent("reviewer");
  const int pid = api["replicas"][0]["pid"].get<int>();
  ASSERT_GT(pid, 0);
  MendRun human = run({"agents", "reviewer"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  EXPECT_THAT(human.out, MatchesRegex("agent +reviewer\n(.|\n)*"));
  EXPECT_THAT(human.out, MatchesRegex("(.|\n)*\nsupervised +yes\n(.|\n)*"));
  EXPECT_THAT(human.out, MatchesRegex("(.|\n)*\ncapabilities +code_review\n(.|\n)*"));
  const auto rows = table_rows(human.out.substr(human.out.find("REPLICA")));
  ASSERT_GE(rows.size(), 2u) << human.out;
  EXPECT_THAT(rows[0], ElementsAre("REPLICA", "URL", "READY", "OUTSTANDING", "EJECTED", "PID",
                                   "RSS", "RESTARTS", "LAST EXIT", "LAST PROBE"));
  EXPECT_EQ(rows[1][0], "0");
  EXPECT_EQ(rows[1][1], api["replicas"][0]["url"]);
  EXPECT_EQ(rows[1][2], "yes");
  // The balancer's: no call is under way between tests, and one replica is never ejected.
  EXPECT_EQ(rows[1][3], "0");
  EXPECT_EQ(rows[1][4], "no");
  EXPECT_EQ(rows[1][5], std::to_string(pid));
  EXPECT_THAT(rows[1][6], MatchesRegex("[0-9.]+ (KiB|MiB|GiB)"));

  MendRun js = run({"agents", "reviewer", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  EXPECT_EQ(js.out_json()["name"], "reviewer");
  EXPECT_EQ(js.out_json()["replicas"][0]["pid"], pid);

  MendRun unknown = run({"agents", "nobody"}, false);
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.out, IsEmpty());
  EXPECT_THAT(unknown.err, HasSubstr("unknown agent 'nobody'"));
  EXPECT_EQ(run({"agents", "nobody", "--json"}, false).exit_code, 1);
}

TEST_F(CliTest, ACircuitOpenedByTheOperatorIsSkippedUntilClosed) {
  // Mutations need the token: none, or a wrong one, is refused with exit 4 and changes nothing.
  MendRun refused = run({"circuits", "open", "reviewer"}, false);
  EXPECT_EQ(refused.exit_code, 4) << refused.describe();
  EXPECT_THAT(refused.err, HasSubstr("the daemon wants a token and none was given (401)"));
  MendRun wrong = run({"circuits", "open", "reviewer", "--token", "wrong"}, false);
  EXPECT_EQ(wrong.exit_code, 4) << wrong.describe();
  EXPECT_THAT(wrong.err, HasSubstr("the daemon refused the token (401)"));
  EXPECT_THAT(wrong.err, HasSubstr("--token or MEND_API_TOKEN"));
  EXPECT_EQ(daemon().agent("reviewer")["circuit"]["state"], "closed");

  // A flag wins over the environment.
  MendRun opened = run({"circuits", "open", "reviewer", "--token", SharedDaemon::kToken}, false,
                       {{"MEND_API_TOKEN", "wrong"}});
  ASSERT_EQ(opened.exit_code, 0) << opened.describe();
  EXPECT_THAT(opened.out, StartsWith("reviewer: circuit isolated"));
  EXPECT_EQ(daemon().agent("reviewer")["circuit"]["state"], "isolated");

  MendRun human = run({"circuits"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const auto rows = table_rows(human.out);
  EXPECT_THAT(rows[0], ElementsAre("AGENT", "STATE", "FAILURES", "TRANSITIONS", "PROBE IN"));
  EXPECT_EQ(row_of(rows, "reviewer").at(1), "isolated");
  EXPECT_EQ(row_of(rows, "backup").at(1), "closed");
  EXPECT_EQ(row_of(rows, "pager").at(1), "closed");
  MendRun js = run({"circuits", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json circuits = js.out_json()["circuits"];
  ASSERT_EQ(circuits.size(), 3u) << js.out;
  EXPECT_EQ(circuits[0]["agent"], "reviewer");
  EXPECT_EQ(circuits[0]["state"], "isolated");

  // A task for the reviewer goes to its chain without reaching it.
  const int calls_before = daemon().agent_stats("reviewer")["tasks_received"].get<int>();
  MendRun task = run({"submit", "--type", "code_review", "--agent", "reviewer", "--payload",
                      R"({"content": "int main() {}\n"})"});
  ASSERT_EQ(task.exit_code, 0) << task.describe();
  EXPECT_THAT(task.out, MatchesRegex("task task-[0-9]+: fallback, answered by backup (.|\n)*"));
  EXPECT_THAT(task.out, HasSubstr("skipped: reviewer (primary: circuit_open)"));
  EXPECT_EQ(daemon().agent_stats("reviewer")["tasks_received"].get<int>(), calls_before);

  MendRun closed = run({"circuits", "close", "reviewer", "--json"});
  ASSERT_EQ(closed.exit_code, 0) << closed.describe();
  EXPECT_EQ(closed.out_json()["circuit"]["state"], "closed");
  EXPECT_EQ(daemon().agent("reviewer")["circuit"]["state"], "closed");
  MendRun again = run({"submit", "--type", "code_review", "--agent", "reviewer", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(again.out_json()["outcome"]["answered_by"], "reviewer");

  MendRun unknown = run({"circuits", "open", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("unknown agent 'nobody'"));
  MendRun nameless = run({"circuits", "open"});
  EXPECT_EQ(nameless.exit_code, 2);
  EXPECT_THAT(nameless.err, HasSubstr("which agent?"));
}

}  // namespace
}  // namespace mend::testing
