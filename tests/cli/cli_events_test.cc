// `mend events` against a daemon the test starts: replay and --count, a quiet stream ended by
// --for, tasks followed as they run, and the stream's end when the daemon stops or dies.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli_test_support.h"
#include "mend_test/posix_regex.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using cli_test_support::CliTest;
using cli_test_support::MendProcess;
using cli_test_support::MendRun;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;

TEST_F(CliTest, EventsReplaysAndStopsAfterCount) {
  // The daemon's start alone published more than three events (agents started, ready).
  MendRun human = run({"events", "--replay", "256", "--count", "3"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const std::vector<std::string> lines = human.out_lines();
  ASSERT_EQ(lines.size(), 3u) << human.out;
  for (const std::string& line : lines) {
    EXPECT_THAT(line, MatchesRegex("[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}  [a-z_]+ +[a-z-]+.*"));
  }
  MendRun js = run({"events", "--replay", "256", "--count", "3", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const std::vector<std::string> objects = js.out_lines();
  ASSERT_EQ(objects.size(), 3u) << js.out;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const json event = json::parse(objects[i], nullptr, false);
    ASSERT_TRUE(event.is_object()) << objects[i];
    // The human lines name the same events, in the same order.
    EXPECT_THAT(lines[i], HasSubstr("  " + event["kind"].get<std::string>() + " "));
    EXPECT_THAT(lines[i], HasSubstr(event["at"].get<std::string>().substr(11, 12)));
  }

  // --for ends a quiet stream in time, exit 0.
  const auto started = std::chrono::steady_clock::now();
  MendRun quiet = run({"events", "--for", "1", "--kind", "no_such_kind"}, false);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(quiet.exit_code, 0) << quiet.describe();
  EXPECT_THAT(quiet.out, IsEmpty());
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 5.0);
}

TEST_F(CliTest, EventsFollowsTasksAsTheyRun) {
  // When the follower's subscription is in place is not visible from here: tasks are submitted
  // one after the other until it has seen what it waits for, live (it asks for no replay).
  auto follow_until_done = [&](MendProcess& follower, const json& chaos_each) {
    std::vector<std::string> ids;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (!follower.exited() && std::chrono::steady_clock::now() < deadline) {
      if (!chaos_each.is_null()) daemon().chaos("reviewer", chaos_each);
      const std::string id = "cli-event-" + std::to_string(next_event_task_++);
      Reply task = daemon().post("/v1/tasks?wait=10",
                                 {{"type", "code_review"}, {"agent", "reviewer"}, {"id", id}});
      EXPECT_EQ(task.status, 200) << task.text;
      ids.push_back(id);
      std::this_thread::sleep_for(100ms);
    }
    return ids;
  };

  MendProcess follower_json({"events", "--kind", "task_finished", "--count", "1", "--for", "20",
                             "--json", "--address", address()});
  std::vector<std::string> ids = follow_until_done(follower_json, json());
  MendRun js = follower_json.finish();
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  ASSERT_EQ(js.out_lines().size(), 1u) << js.out;
  const json finished = json::parse(js.out_lines()[0], nullptr, false);
  EXPECT_EQ(finished["kind"], "task_finished");
  EXPECT_THAT(ids, ::testing::Contains(finished["task_id"].get<std::string>()));
  EXPECT_EQ(finished["source"], "reviewer");
  EXPECT_EQ(finished["detail"], "succeeded");

  // Human lines; each task is retried once.
  MendProcess follower({"events", "--kind", "retry_scheduled", "--kind", "task_finished", "--count",
                        "2", "--for", "20", "--address", address()});
  ids = follow_until_done(follower, {{"fail_next", {{{"kind", "503"}, {"count", 1}}}}});
  MendRun human = follower.finish();
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const std::vector<std::string> lines = human.out_lines();
  ASSERT_EQ(lines.size(), 2u) << human.out;
  const std::string retry =
      "[0-9:.]{12}  retry_scheduled +reviewer +task=(cli-event-[0-9]+) attempt=0 "
      "error_type=temporary_unavailable severity=medium delay=[0-9.]+m?s  answered 503: .*";
  const std::string done =
      "[0-9:.]{12}  task_finished +reviewer +task=(cli-event-[0-9]+)  "
      "succeeded_after_retry";
  // The follower may have come in between a task's retry and its end: then it saw that end
  // and the next task's retry.
  const std::size_t retry_line = regex_full_match(lines[0], retry) ? 0 : 1;
  std::optional<std::vector<std::string>> m = regex_full_match(lines[retry_line], retry);
  ASSERT_TRUE(m) << human.out;
  EXPECT_THAT(ids, ::testing::Contains((*m)[1]));
  m = regex_full_match(lines[1 - retry_line], done);
  ASSERT_TRUE(m) << human.out;
  EXPECT_THAT(ids, ::testing::Contains((*m)[1]));
}

// A daemon of its own, to be stopped.
using CliStoppingDaemonTest = ServeTest;

TEST_F(CliStoppingDaemonTest, EventsEndsWhenTheDaemonStops) {
  start_daemon(config_yaml(agent_yaml("reviewer")));
  ASSERT_FALSE(HasFatalFailure());
  MendProcess open_ended({"events", "--address", base_});
  MendProcess counting({"events", "--count", "1000", "--address", base_});
  wait_until([&] { return metrics().find("mend_event_stream_clients 2\n") != std::string::npos; },
             10s, "both followers to subscribe");
  daemon_->signal(SIGTERM);
  MendRun ended = open_ended.finish();
  EXPECT_EQ(ended.exit_code, 0) << ended.describe();
  EXPECT_THAT(ended.err, HasSubstr("the event stream ended (is mend stopping?)"));
  MendRun short_of_count = counting.finish();
  EXPECT_EQ(short_of_count.exit_code, 1) << short_of_count.describe();
  EXPECT_THAT(short_of_count.err, MatchesRegex("mend events: the event stream ended after [0-9]+ "
                                               "of 1000 events \\(is mend stopping\\?\\)\n"));
  ASSERT_TRUE(daemon_->wait_exit(20s).has_value());
}

// A daemon killed outright ends the stream without its last chunk: not a stop, a lost daemon.
TEST_F(CliStoppingDaemonTest, EventsSaysSoWhenTheDaemonDies) {
  start_daemon(config_yaml(agent_yaml("reviewer")));
  ASSERT_FALSE(HasFatalFailure());
  MendProcess follower({"events", "--address", base_});
  wait_until([&] { return metrics().find("mend_event_stream_clients 1\n") != std::string::npos; },
             10s, "the follower to subscribe");
  daemon_->signal(SIGKILL);
  MendRun cut = follower.finish();
  EXPECT_EQ(cut.exit_code, 3) << cut.describe();
  EXPECT_THAT(cut.err, HasSubstr("the event stream was cut off"));
  ASSERT_TRUE(daemon_->wait_exit(20s).has_value());
}

}  // namespace
}  // namespace mend::testing
