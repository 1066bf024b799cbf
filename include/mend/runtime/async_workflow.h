// File: mend/runtime/async_workflow.h
//
// The workflow (mend/core/workflow.h) driven on Asio: the same state machine as Workflow::run, with
// agent calls made by an AsyncAgentInvoker, waits on Asio timers, and the blocking steps
// (self-healing actions, store writes of escalations and of the journal) moved to a separate
// executor so that the I/O threads never block.
//
// Two ways to run a task; both drive the same machine:
//
//   boost::asio::thread_pool blocking(2);
//   // In a coroutine:
//   mend::Outcome out = co_await mend::run_workflow_async(workflow, task, invoker, &operations,
//                                                         blocking.get_executor());
//   // Or with any Asio completion token (a callback here), from any thread:
//   mend::async_run_workflow(workflow, task, invoker, &operations, io.get_executor(),
//                            blocking.get_executor(),
//                            [](std::exception_ptr error, mend::Outcome outcome) { ... });
//
// A task waiting between steps (in backoff, above all) is one small heap object holding the run
// and its timer, not a chain of coroutine frames: a daemon may hold 100,000 of them during an
// outage (docs/benchmarks.md measures the bytes per waiting task). The completion is dispatched
// to the handler's associated executor (`io` when it has none), never from within the call that
// started the run. An exception thrown by the workflow itself (not by an agent call) is the
// completion's exception_ptr (and rethrown by co_await); the Outcome is then empty.
//
// Backoff waits use real time (an Asio steady_timer) whatever clock the workflow's Env holds;
// tests of timing use the synchronous driver on a manual clock, which runs the same machine.
//
// Hedged calls (WorkflowStep::hedge_after; mend/core/hedging.h): the call is started with a
// CallCancel (AsyncAgentInvoker's cancellable invoke_async) and a timer armed for the delay; when
// the timer fires first, the run's start_hedge() names another replica and the same call goes
// there too. The first answer (or a failure when the other call is not out) decides the step and
// resumes the run; the other call is cancelled (HttpAgentInvoker closes its connection) and its
// late end touches nothing but the two calls' shared state. A failure while the other call is out
// is handed to the run (provide_early_failure) and the other call is waited for. The two calls
// run on copies of the agent's AgentInfo and the task, so a lost call may end after its run.
//
// Lifetimes: `workflow`, `invoker`, `operations` and the blocking executor's context must outlive
// the run; `invoker` also the cancelled call of a hedged step, which may end (promptly, once
// cancelled) after the run completed. `blocking` must not be an executor of the I/O threads:
// HttpAgentOperations blocks on request_sync(), which would wait for itself there. An invoker that
// throws fails its call (as in the synchronous driver); an exception of the escalation sink fails
// the escalation step only (Outcome::escalation_error). Shutting down: join the blocking executor's
// threads first, then destroy the io_context. Runs in flight are then destroyed without completing
// (their breaker permits, bulkhead slots and retry tokens are given back), and so are runs whose
// job the blocking executor dropped unrun. (A job still running on `blocking` comes back to `io`:
// the io_context must not be destroyed under it.) A completion handler that throws throws out of
// the io_context's run(), as any Asio handler does.
//
// With boost::asio::use_awaitable, Boost 1.74 starts the run inside a noexcept function: running
// out of memory while starting it terminates the program instead of throwing.
//
// Thread-safety: as Workflow::run. Many tasks may run concurrently on one io_context; a run's
// steps follow one another, never two at once.
#ifndef MEND_RUNTIME_ASYNC_WORKFLOW_H_
#define MEND_RUNTIME_ASYNC_WORKFLOW_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <exception>
#include <memory>

#include "mend/core/workflow.h"
#include "mend/runtime/agent_client.h"

namespace mend {

namespace detail {

// Receives a run's end; the driver calls complete() once, on `io`, and then forgets it.
class WorkflowCompletion {
 public:
  virtual ~WorkflowCompletion() = default;
  virtual void complete(const boost::asio::any_io_executor& io, std::exception_ptr error,
                        Outcome outcome) = 0;
};

void start_workflow(const Workflow& workflow, Task task, AsyncAgentInvoker& invoker,
                    AgentOperations* operations, boost::asio::any_io_executor io,
                    boost::asio::any_io_executor blocking,
                    std::unique_ptr<WorkflowCompletion> completion);

}  // namespace detail

// Runs `task` on `io` (agent calls, timers) and `blocking` (healing, escalations, journal writes
// that cannot be queued); completes with void(std::exception_ptr, Outcome).
template <class CompletionToken>
auto async_run_workflow(const Workflow& workflow, Task task, AsyncAgentInvoker& invoker,
                        AgentOperations* operations, boost::asio::any_io_executor io,
                        boost::asio::any_io_executor blocking, CompletionToken&& token) {
  auto initiate = [&workflow, &invoker, operations](auto handler, Task run_task,
                                                    boost::asio::any_io_executor run_io,
                                                    boost::asio::any_io_executor run_blocking) {
    using Handler = decltype(handler);
    // Keeps the handler's own executor busy while the run is in flight, when it is not the
    // run's (a handler bound to a strand of another io_context, say), as Asio's own operations
    // do; a pointer, so that the common case (the same executor) costs 8 bytes per run.
    struct Completion final : detail::WorkflowCompletion {
      Completion(Handler h, const boost::asio::any_io_executor& io) : handler(std::move(h)) {
        boost::asio::any_io_executor own = boost::asio::get_associated_executor(handler, io);
        if (own != io) {
          handler_work = std::make_unique<boost::asio::any_io_executor>(
              boost::asio::prefer(own, boost::asio::execution::outstanding_work.tracked));
        }
      }
      void complete(const boost::asio::any_io_executor& io, std::exception_ptr error,
                    Outcome outcome) override {
        auto executor = boost::asio::get_associated_executor(handler, io);
        boost::asio::dispatch(executor,
                              [handler = std::move(handler), error, outcome = std::move(outcome),
                               work = std::move(handler_work)]() mutable {
                                std::move(handler)(error, std::move(outcome));
                              });
      }
      Handler handler;
      std::unique_ptr<boost::asio::any_io_executor> handler_work;
    };
    auto completion = std::make_unique<Completion>(std::move(handler), run_io);
    detail::start_workflow(workflow, std::move(run_task), invoker, operations, std::move(run_io),
                           std::move(run_blocking), std::move(completion));
  };
  return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, Outcome)>(
      std::move(initiate), token, std::move(task), std::move(io), std::move(blocking));
}

// The same run awaited from a coroutine, on the coroutine's own executor.
boost::asio::awaitable<Outcome> run_workflow_async(const Workflow& workflow, Task task,
                                                   AsyncAgentInvoker& invoker,
                                                   AgentOperations* operations,
                                                   boost::asio::any_io_executor blocking);

}  // namespace mend

#endif  // MEND_RUNTIME_ASYNC_WORKFLOW_H_
