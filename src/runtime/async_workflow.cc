#include "mend/async_workflow.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mend {
namespace {

// Runs `fn` on `executor` and resumes the caller on its own executor with the result. (co_spawn
// wants a default-constructible result, which Result<T> is not: hence the optional.)
// GCC 12 destroys a non-trivial temporary twice when it sits in the same full-expression as a
// co_await (the lambdas passed here, with their captured strings): callers create the awaitable
// in a statement of its own and co_await the named result.
template <class Fn>
auto offload(boost::asio::any_io_executor executor, Fn fn)
    -> boost::asio::awaitable<decltype(fn())> {
  using R = decltype(fn());
  auto call = [fn = std::move(fn)]() mutable -> boost::asio::awaitable<std::optional<R>> {
    co_return std::optional<R>(fn());
  };
  auto spawned = boost::asio::co_spawn(executor, std::move(call), boost::asio::use_awaitable);
  std::optional<R> r = co_await std::move(spawned);
  co_return std::move(*r);
}

}  // namespace

boost::asio::awaitable<Outcome> run_workflow_async(const Workflow& workflow, Task task,
                                                   AsyncAgentInvoker& invoker,
                                                   AgentOperations* operations,
                                                   boost::asio::any_io_executor blocking) {
  std::unique_ptr<WorkflowRun> run = workflow.start(std::move(task), operations != nullptr);
  const auto io = co_await boost::asio::this_coro::executor;
  for (;;) {
    const WorkflowStep& step = run->next();
    switch (step.kind) {
      case WorkflowStep::Kind::call: {
        std::optional<Result<std::string>> result;
        try {
          result.emplace(
              co_await invoker.invoke_async(*step.agent, step.replica, run->task(), step.attempt));
        } catch (const std::exception& e) {
          // As the synchronous driver: an invoker that throws fails its call, not the run.
          result.emplace(Error::from_live_exception(e, std::current_exception()));
        }
        run->provide_call_result(std::move(*result));
        break;
      }
      case WorkflowStep::Kind::wait: {
        boost::asio::steady_timer timer(io, step.delay);
        co_await timer.async_wait(boost::asio::use_awaitable);
        break;
      }
      case WorkflowStep::Kind::heal: {
        // start() enabled healing only with both a healer and operations.
        SelfHealer* healer = workflow.options().healer;
        const std::string agent = step.agent->name;
        const Symptoms symptoms = step.symptoms;
        const Clock* clock = workflow.env().clock;
        // heal() turns failures of the operations and strategies into its report.
        auto healing = offload(
            blocking, [=] { return healer->heal(agent, symptoms, *operations, clock->now()); });
        run->provide_healing(co_await std::move(healing));
        break;
      }
      case WorkflowStep::Kind::escalate: {
        EscalationSink* sink = workflow.options().escalations;
        EscalationRequest request = step.escalation;
        auto escalation = offload(blocking, [sink, request = std::move(request)] {
          return detail::guarded([&] { return sink->escalate(request); });
        });
        run->provide_escalation(co_await std::move(escalation));
        break;
      }
      case WorkflowStep::Kind::done: {
        Outcome outcome = run->take_outcome();
        TaskJournal* journal = workflow.options().journal;
        if (journal != nullptr && journal->try_record(run->task(), outcome)) {
          // Queued without blocking: no hop to the blocking executor.
        } else if (journal != nullptr) {
          // A store write: off the I/O threads, like escalations.
          // Copies, not references into this frame: the pool thread must not outlive them.
          auto recorded =
              offload(blocking, [journal, task = run->task(), outcome = std::move(outcome)] {
                journal->record(task, outcome);
                return outcome;
              });
          outcome = co_await std::move(recorded);
        }
        co_return std::move(outcome);  // co_return of a named local copies in C++20
      }
    }
  }
}

}  // namespace mend
