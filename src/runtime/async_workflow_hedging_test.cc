// The async driver's hedged calls (WorkflowStep::hedge_after): the first call is raced against a
// hedge to another replica once the delay passes, the first result that decides the step resumes
// the run, and the other call is cancelled through its CallCancel. In-process agents whose calls
// end when the test (or the cancel) says, on a real io_context; nothing sleeps. The hedge
// decisions themselves are tested on a manual clock in src/core/workflow_hedging_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mend/core/events.h"
#include "mend/runtime/async_workflow.h"
#include "mend_test/io_loop.h"

namespace mend {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;

// An agent whose first call is held (it never answers) until it is cancelled, or released to
// answer; every other call answers at once, or fails with a 503 when `fail_others`.
struct HeldFirstAgent final : AsyncAgentInvoker {
  net::awaitable<Result<std::string>> invoke_async(const AgentInfo& agent, int replica,
                                                   const Task& task, int attempt) override {
    // Not used by the driver for hedged steps; the cancellable overload below is.
    return invoke_async(agent, replica, task, attempt, std::make_shared<CallCancel>());
  }
  net::awaitable<Result<std::string>> invoke_async(const AgentInfo&, int replica, const Task& task,
                                                   int,
                                                   std::shared_ptr<CallCancel> cancel) override {
    const int call = calls.fetch_add(1);
    {
      std::lock_guard lock(mu);
      replicas.push_back(replica);
      limits.push_back(task.attempt_timeout);
    }
    if (call > 0) {
      if (fail_others) co_return Error::http(503, "overloaded");
      co_return std::string(R"({"replica":)" + std::to_string(replica) + "}");
    }
    auto executor = co_await net::this_coro::executor;
    auto timer =
        std::make_shared<net::steady_timer>(executor, net::steady_timer::time_point::max());
    {
      std::lock_guard lock(mu);
      held = timer;
    }
    if (!cancel->set_hook([this, timer] {
          cancel_hook_ran.set_value();
          net::post(timer->get_executor(), [timer] { timer->cancel(); });
        })) {
      co_return Error::of_kind("cancelled", "cancelled before it started");
    }
    boost::system::error_code ec;
    co_await timer->async_wait(net::redirect_error(net::use_awaitable, ec));
    const bool cancelled = !cancel->clear_hook();
    first_ended.set_value(cancelled);
    if (cancelled) co_return Error::of_kind("cancelled", "cancelled");
    co_return std::string(R"({"replica":)" + std::to_string(replica) + "}");
  }
  // Lets the held first call answer.
  void release_first() {
    std::lock_guard lock(mu);
    if (auto timer = held.lock()) net::post(timer->get_executor(), [timer] { timer->cancel(); });
  }
  std::vector<int> called() {
    std::lock_guard lock(mu);
    return replicas;
  }

  bool fail_others = false;
  std::atomic<int> calls{0};
  std::promise<void> cancel_hook_ran;
  std::promise<bool> first_ended;  // true: it ended cancelled
  std::mutex mu;
  std::vector<int> replicas;
  std::vector<std::optional<Duration>> limits;  // each call's time limit, in order
  std::weak_ptr<net::steady_timer> held;
};

// Records events; when a call fails while the other is out ("await_other"), runs `on_await`.
struct Sink final : EventSink {
  void emit(const Event& event) noexcept override {
    if (event.kind == EventKind::attempt_failed && event.detail == "await_other" && on_await) {
      on_await();
    }
    recorded.emit(event);
  }
  std::vector<std::string> hedges() const {
    std::vector<std::string> out;
    for (const Event& e : recorded.events()) {
      if (e.kind == EventKind::hedged) out.push_back(e.detail);
    }
    return out;
  }
  std::function<void()> on_await;
  RecordingEventSink recorded;
};

using mend::testing::RunningIo;

class AsyncHedgingTest : public ::testing::Test {
 protected:
  void add_reviewer(Duration hedge_delay) {
    HedgingOptions hedging;
    hedging.delay = hedge_delay;
    hedging.task_types = {"code_review"};
    AgentInfo reviewer{.name = "reviewer",
                       .endpoints = {"http://r0", "http://r1"},
                       .call_timeout = std::chrono::seconds(2),
                       .hedging = hedging};
    ASSERT_TRUE(agents.add(reviewer).ok());
  }
  Workflow make_workflow() {
    Env env = Env::system();
    env.events = &sink;
    return Workflow(agents, WorkflowOptions{}, env);
  }
  std::optional<Outcome> complete(const Workflow& workflow, RunningIo& io) {
    auto done = std::make_shared<std::promise<Outcome>>();
    std::future<Outcome> f = done->get_future();
    async_run_workflow(
        workflow, Task{.id = "t-1", .type = "code_review", .agent = "reviewer"}, invoker, nullptr,
        io.io.get_executor(), blocking.get_executor(),
        [done](std::exception_ptr, Outcome outcome) { done->set_value(std::move(outcome)); });
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return std::nullopt;
    return f.get();
  }
  int outstanding() {
    int n = 0;
    for (const ReplicaSnapshot& s :
         agents.find("reviewer")->balancer.snapshot(SystemClock::instance().now())) {
      n += s.outstanding;
    }
    return n;
  }

  AgentRegistry agents;
  Sink sink;
  HeldFirstAgent invoker;
  net::thread_pool blocking{1};
};

TEST_F(AsyncHedgingTest, AHeldFirstCallIsHedgedTheHedgeAnswersAndTheFirstIsCancelled) {
  add_reviewer(milliseconds(1));
  Workflow workflow = make_workflow();
  RunningIo io;
  std::optional<Outcome> out = complete(workflow, io);
  ASSERT_TRUE(out.has_value());
  const std::vector<int> called = invoker.called();
  ASSERT_EQ(called.size(), 2u);
  EXPECT_NE(called[0], called[1]);
  EXPECT_EQ(out->status, OutcomeStatus::succeeded);
  EXPECT_EQ(out->answer, R"({"replica":)" + std::to_string(called[1]) + "}");
  ASSERT_EQ(out->attempts.size(), 1u);
  EXPECT_EQ(out->attempts[0].replica, called[0]);
  EXPECT_EQ(out->attempts[0].hedge_replica, called[1]);
  EXPECT_TRUE(out->attempts[0].hedge_won);
  EXPECT_THAT(sink.hedges(), ::testing::ElementsAre("won"));
  // The hedge has what was left of the first call's time limit when it went: the step never
  // outlasts the first call's limit.
  {
    std::lock_guard lock(invoker.mu);
    ASSERT_EQ(invoker.limits.size(), 2u);
    EXPECT_EQ(invoker.limits[0], std::optional<Duration>(std::chrono::seconds(2)));
    EXPECT_EQ(invoker.limits[1],
              std::optional<Duration>(std::chrono::seconds(2) - milliseconds(1)));
  }
  // The first call was cancelled, and ended for it (not at a timeout).
  EXPECT_EQ(invoker.cancel_hook_ran.get_future().wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
  std::future<bool> ended = invoker.first_ended.get_future();
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(ended.get());
  EXPECT_EQ(outstanding(), 0);
}

TEST_F(AsyncHedgingTest, AFirstCallThatAnswersBeforeTheDelayIsNotHedged) {
  add_reviewer(std::chrono::hours(1));  // the run must not wait for the timer either
  invoker.calls = 1;                    // no call is held
  Workflow workflow = make_workflow();
  RunningIo io;
  std::optional<Outcome> out = complete(workflow, io);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status, OutcomeStatus::succeeded);
  EXPECT_EQ(invoker.called().size(), 1u);
  ASSERT_EQ(out->attempts.size(), 1u);
  EXPECT_EQ(out->attempts[0].hedge_replica, -1);
  EXPECT_TRUE(sink.hedges().empty());
  EXPECT_EQ(outstanding(), 0);
}

TEST_F(AsyncHedgingTest, AHedgeThatFailsWhileTheFirstIsOutLeavesTheStepToTheFirstCall) {
  add_reviewer(milliseconds(1));
  invoker.fail_others = true;
  sink.on_await = [this] { invoker.release_first(); };  // the first answers once the hedge failed
  Workflow workflow = make_workflow();
  RunningIo io;
  std::optional<Outcome> out = complete(workflow, io);
  ASSERT_TRUE(out.has_value());
  const std::vector<int> called = invoker.called();
  ASSERT_EQ(called.size(), 2u);
  EXPECT_EQ(out->status, OutcomeStatus::succeeded);
  EXPECT_EQ(out->answer, R"({"replica":)" + std::to_string(called[0]) + "}");
  ASSERT_EQ(out->attempts.size(), 2u);
  EXPECT_EQ(out->attempts[0].decision, "await_other");
  EXPECT_TRUE(out->attempts[0].hedge_won);  // that entry is the hedge's failure
  EXPECT_EQ(out->attempts[1].decision, "answered");
  EXPECT_FALSE(out->attempts[1].hedge_won);
  EXPECT_THAT(sink.hedges(), ::testing::ElementsAre("lost"));
  std::future<bool> ended = invoker.first_ended.get_future();
  ASSERT_EQ(ended.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_FALSE(ended.get());  // it answered; nothing was cancelled
  EXPECT_EQ(outstanding(), 0);
}

}  // namespace
}  // namespace mend
