// The async driver (mend/runtime/async_workflow.h) with in-process agents: how a run moves between
// the I/O executor, its timer and the blocking executor, and what happens to runs still waiting
// when the io_context goes away. The workflow's decisions themselves are tested on a manual
// clock in src/core/workflow_*_test.cc; over real HTTP in tests/e2e/workflow_e2e_test.cc.
#include "mend/runtime/async_workflow.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "mend/core/retry_budget.h"
#include "mend_test/io_loop.h"

namespace mend {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Answers from memory. `failures` first calls (all tasks together) fail as an agent's 503.
struct MemoryAgents final : AsyncAgentInvoker {
  net::awaitable<Result<std::string>> invoke_async(const AgentInfo&, int, const Task&,
                                                   int) override {
    const int call = calls.fetch_add(1);
    if (call < failures) co_return failure;
    co_return std::string(R"({"ok":true})");
  }
  int failures = 0;
  Error failure = Error::http(503, "warming up");
  std::atomic<int> calls{0};
};

using mend::testing::RunningIo;

// What a run's completion handler received, and on which thread.
struct Completed {
  std::exception_ptr error;
  Outcome outcome;
  std::thread::id thread;
};

class AsyncWorkflowTest : public ::testing::Test {
 protected:
  AsyncWorkflowTest() {
    AgentInfo reviewer{.name = "reviewer", .capabilities = {"code_review"}};
    reviewer.breaker.failure_threshold = 1000;  // failures here are about retries, not the circuit
    EXPECT_TRUE(agents.add(reviewer).ok());
  }
  Workflow make_workflow(WorkflowOptions options = {}, milliseconds backoff = milliseconds(1)) {
    options.retry.backoff.base = backoff;
    options.retry.backoff.cap = backoff;
    return Workflow(agents, std::move(options));
  }
  static Task task(std::string id = "t-1") {
    return {.id = std::move(id), .type = "code_review", .agent = "reviewer"};
  }

  // Starts `task` on `io` with a callback and waits for its completion (10 s at most).
  std::optional<Completed> complete(const Workflow& workflow, Task task, RunningIo& io,
                                    AgentOperations* operations = nullptr) {
    auto done = std::make_shared<std::promise<Completed>>();  // outlives a late completion
    std::future<Completed> f = done->get_future();
    async_run_workflow(workflow, std::move(task), invoker, operations, io.io.get_executor(),
                       blocking.get_executor(), [done](std::exception_ptr e, Outcome outcome) {
                         done->set_value({e, std::move(outcome), std::this_thread::get_id()});
                       });
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return std::nullopt;
    return f.get();
  }

  AgentRegistry agents;
  MemoryAgents invoker;
  net::thread_pool blocking{1};
};

TEST_F(AsyncWorkflowTest, ACallbackGetsTheOutcomeOnTheIoThreadAfterTheBackoffWait) {
  invoker.failures = 1;
  Workflow workflow = make_workflow();
  RunningIo io;
  std::optional<Completed> completed = complete(workflow, task(), io);
  ASSERT_TRUE(completed.has_value());
  Completed& c = *completed;
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.thread, io.thread.get_id());
  EXPECT_EQ(c.outcome.status, OutcomeStatus::succeeded_after_retry);
  ASSERT_EQ(c.outcome.attempts.size(), 2u);
  EXPECT_EQ(c.outcome.attempts[0].decision, "retry");
  EXPECT_LE(c.outcome.attempts[0].delay, milliseconds(1));  // the cap; jitter may shorten it
  EXPECT_EQ(invoker.calls.load(), 2);
}

TEST_F(AsyncWorkflowTest, DestroyingTheIoContextEndsWaitingRunsAndGivesBackTheirRetryTokens) {
  invoker.failures = 1000;  // every task waits in backoff (an hour)
  auto budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});
  WorkflowOptions options;
  options.retry.budget = budget;
  Workflow workflow = make_workflow(std::move(options), std::chrono::hours(1));
  auto io = std::make_unique<net::io_context>(1);
  auto alive = std::make_shared<int>(0);  // every completion handler holds a copy
  std::atomic<int> completed{0};
  constexpr int kTasks = 5;
  for (int i = 0; i < kTasks; ++i) {
    async_run_workflow(workflow, task("t-" + std::to_string(i)), invoker, nullptr,
                       io->get_executor(), blocking.get_executor(),
                       [alive, &completed](std::exception_ptr, Outcome) { ++completed; });
  }
  EXPECT_EQ(alive.use_count(), kTasks + 1);
  for (int turn = 0; turn < 1000 && invoker.calls.load() < kTasks; ++turn) {
    io->run_one_for(milliseconds(10));
  }
  while (io->poll() > 0) {
  }
  ASSERT_EQ(invoker.calls.load(), kTasks);
  EXPECT_EQ(budget->retries_in_flight(), kTasks);  // each waiting retry holds a token

  io.reset();
  EXPECT_EQ(completed.load(), 0);             // destroyed, not completed
  EXPECT_EQ(alive.use_count(), 1);            // and their handlers with them
  EXPECT_EQ(budget->retries_in_flight(), 0);  // the runs gave their tokens back
}

// Records on which thread the escalation ran; throws when told to.
struct ThreadSink final : EscalationSink {
  Result<EscalationTaken> escalate(const EscalationRequest& request) override {
    thread = std::this_thread::get_id();
    if (fail) throw std::runtime_error("the ticket system is down");
    EscalationTaken taken;
    taken.level = request.level;
    taken.action = "notified_and_ticketed";
    taken.record = "TKT-1";
    taken.record_id = 1;
    return taken;
  }
  bool fail = false;
  std::thread::id thread;
};

TEST_F(AsyncWorkflowTest, EscalationsRunOnTheBlockingExecutorAndAThrowingSinkFailsOnlyThatStep) {
  invoker.failures = 1000;  // the reviewer never answers: degraded, escalated
  DegradedService degraded;
  for (bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "the sink throws" : "the sink answers");
    ThreadSink sink;
    sink.fail = fail;
    Workflow workflow = make_workflow({.degraded = &degraded, .escalations = &sink});
    RunningIo io;
    auto f = net::co_spawn(
        io.io.get_executor(),
        run_workflow_async(workflow, task(), invoker, nullptr, blocking.get_executor()),
        net::use_future);
    ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    Outcome out = f.get();
    EXPECT_EQ(out.status, OutcomeStatus::degraded);
    EXPECT_NE(sink.thread, std::thread::id());
    EXPECT_NE(sink.thread, io.thread.get_id());
    if (fail) {
      EXPECT_FALSE(out.escalation.has_value());
      EXPECT_THAT(out.escalation_error, HasSubstr("the ticket system is down"));
    } else {
      ASSERT_TRUE(out.escalation.has_value());
      EXPECT_EQ(out.escalation->record, "TKT-1");
    }
  }
}

// Self-healing's actions: everything succeeds and the probe answers healthy; notes the threads.
struct ThreadOperations final : AgentOperations {
  ProbeResult probe(const std::string& agent) override {
    (void)note("probe " + agent);
    ProbeResult p;
    p.answered = true;
    p.reported = HealthState::healthy;
    return p;
  }
  Result<void> clear_caches(const std::string& a) override { return note("clear_caches " + a); }
  Result<void> reset_connection_pools(const std::string& a) override {
    return note("reset_connection_pools " + a);
  }
  Result<void> increase_connection_limits(const std::string& a) override {
    return note("increase_connection_limits " + a);
  }
  Result<void> reconnect_database(const std::string& a) override {
    return note("reconnect_database " + a);
  }
  Result<void> restart(const std::string& a, bool) override { return note("restart " + a); }
  Result<void> wait_until_ready(const std::string& a, Duration) override {
    return note("wait_until_ready " + a);
  }
  Result<void> note(std::string what) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(std::move(what));
    threads.push_back(std::this_thread::get_id());
    return {};
  }
  std::mutex mu;
  std::vector<std::string> calls;
  std::vector<std::thread::id> threads;
};

TEST_F(AsyncWorkflowTest, SelfHealingRunsOnTheBlockingExecutorThenTheAgentIsCalledAgain) {
  invoker.failures = 1;
  invoker.failure = Error::classified_as(ErrorType::database_error, Severity::high, "lost the db");
  SelfHealer healer;
  ThreadOperations operations;
  Workflow workflow = make_workflow({.healer = &healer});
  RunningIo io;
  std::optional<Completed> completed = complete(workflow, task(), io, &operations);
  ASSERT_TRUE(completed.has_value());
  Completed& c = *completed;
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.outcome.status, OutcomeStatus::succeeded_after_retry);
  ASSERT_EQ(c.outcome.healing.size(), 1u);
  EXPECT_EQ(c.outcome.healing[0].issue, "database_connection_lost");
  EXPECT_TRUE(c.outcome.healing[0].recovered);
  EXPECT_EQ(c.outcome.attempts[0].decision, "self_healing");
  EXPECT_EQ(invoker.calls.load(), 2);
  std::lock_guard<std::mutex> lock(operations.mu);
  EXPECT_THAT(operations.calls,
              ::testing::ElementsAre("reconnect_database reviewer", "probe reviewer"));
  for (std::thread::id thread : operations.threads) EXPECT_NE(thread, io.thread.get_id());
}

// Cannot queue: every entry goes through record(), which notes its thread.
struct BlockingJournal final : TaskJournal {
  void record(const Task& task, const Outcome& outcome) noexcept override {
    std::lock_guard<std::mutex> lock(mu);
    recorded.push_back(task.id + " " + std::string(to_string(outcome.status)));
    thread = std::this_thread::get_id();
  }
  std::mutex mu;
  std::vector<std::string> recorded;
  std::thread::id thread;
};

TEST_F(AsyncWorkflowTest, AJournalThatCannotQueueIsWrittenOnTheBlockingExecutorBeforeCompletion) {
  BlockingJournal journal;
  Workflow workflow = make_workflow({.journal = &journal});
  std::promise<std::vector<std::string>> done;
  RunningIo io;
  async_run_workflow(workflow, task("t-7"), invoker, nullptr, io.io.get_executor(),
                     blocking.get_executor(), [&](std::exception_ptr, Outcome) {
                       std::lock_guard<std::mutex> lock(journal.mu);
                       done.set_value(journal.recorded);  // what was written when it completed
                     });
  std::future<std::vector<std::string>> f = done.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_THAT(f.get(), ::testing::ElementsAre("t-7 succeeded"));
  std::lock_guard<std::mutex> lock(journal.mu);
  EXPECT_NE(journal.thread, io.thread.get_id());
}

TEST_F(AsyncWorkflowTest, AnExceptionOfTheWorkflowItselfReachesTheCompletionAndTheAwaiter) {
  invoker.failures = 1000;
  DegradedService degraded;
  degraded.set_handler("code_review",
                       [](std::string_view, const DegradedService::Fields&) -> DegradedAnswer {
                         throw std::runtime_error("the degraded handler broke");
                       });
  Workflow workflow = make_workflow({.degraded = &degraded});
  RunningIo io;
  std::optional<Completed> completed = complete(workflow, task(), io);
  ASSERT_TRUE(completed.has_value());
  Completed& c = *completed;
  ASSERT_TRUE(c.error);
  EXPECT_THROW(std::rethrow_exception(c.error), std::runtime_error);
  EXPECT_TRUE(c.outcome.task_id.empty());

  auto awaited = net::co_spawn(
      io.io.get_executor(),
      run_workflow_async(workflow, task("t-2"), invoker, nullptr, blocking.get_executor()),
      net::use_future);
  ASSERT_EQ(awaited.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_THROW(awaited.get(), std::runtime_error);
}

}  // namespace
}  // namespace mend
