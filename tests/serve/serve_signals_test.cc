// `mend serve`'s signals: SIGHUP applies a valid configuration and keeps the running one when
// the new one is invalid; SIGTERM drains the tasks in flight, stops the agents and exits 0.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "serve_fixture.h"
#include "serve_test_support.h"

namespace mend::testing {
namespace {

using serve_test_support::outcome_status;
using ::testing::HasSubstr;

TEST_F(ServeTest, SighupAppliesAValidConfigAndKeepsTheRunningOneWhenTheNewOneIsInvalid) {
  start_daemon(config_yaml(default_agents()));
  const int reviewer_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  // A fourth agent; the others unchanged (and not restarted).
  write_config(config_yaml(default_agents() + agent_yaml("linter")));
  daemon_->signal(SIGHUP);
  wait_until([&] { return get("/v1/agents/linter").status == 200; }, 10s, "the new agent");
  wait_until([&] { return get("/readyz").status == 200; }, 10s, "the new agent ready");
  EXPECT_EQ(agent("reviewer")["replicas"][0]["pid"].get<int>(), reviewer_pid);
  Reply r = submit("linter");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "linter");

  // An invalid file: refused, the running configuration stays.
  write_config("agents: [ {name: broken, replicas: many} ]\n");
  Reply reload = post("/v1/reload", json::object());
  EXPECT_EQ(reload.status, 422) << reload.text;
  EXPECT_THAT(reload.text, HasSubstr("replicas"));
  EXPECT_EQ(get("/v1/agents/linter").status, 200);
  EXPECT_THAT(metrics(), HasSubstr("mend_config_reloads_total{result=\"invalid\"} 1"));
  EXPECT_EQ(outcome_status(submit("reviewer")), "succeeded");
}

TEST_F(ServeTest, SigtermDrainsTasksInFlightStopsTheAgentsAndExitsZero) {
  start_daemon(config_yaml(default_agents()));
  std::vector<int> pids;
  for (const char* name : {"reviewer", "backup", "generalist"}) {
    pids.push_back(agent(name)["replicas"][0]["pid"].get<int>());
  }
  chaos("reviewer", {{"latency_ms", 1000}});
  auto slow = std::async(std::launch::async, [&] { return submit("reviewer"); });
  wait_until([&] { return agent("reviewer")["in_flight"].get<int>() == 1; }, 5s,
             "the task to be in flight");
  daemon_->signal(SIGTERM);
  Reply r = slow.get();
  ASSERT_EQ(r.status, 200) << r.text << "\ndaemon log:\n" << log();  // drained, not dropped
  EXPECT_EQ(outcome_status(r), "succeeded");
  std::optional<int> status = daemon_->wait_exit(20s);
  ASSERT_TRUE(status.has_value()) << log();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0) << log();
  for (int pid : pids) EXPECT_FALSE(process_alive(pid)) << pid;
  EXPECT_THAT(log(), HasSubstr("mend stopped"));
  // The journal is written in batches: the drained task's entry was written before mend exited.
  const std::string task_id = json::parse(r.text).at("id").get<std::string>();
  auto store = SqliteStore::open(dir_.file("mend.db"));
  ASSERT_TRUE(store.ok()) << store.error().describe();
  bool journaled = false;
  for (const JournalEntry& e : (*store)->journal(100)) journaled |= e.task_id == task_id;
  EXPECT_TRUE(journaled) << task_id;
}

}  // namespace
}  // namespace mend::testing
