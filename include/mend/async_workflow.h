// File: mend/async_workflow.h
//
// The workflow (mend/workflow.h) driven on Asio coroutines: the same state machine as
// Workflow::run, with agent calls made by an AsyncAgentInvoker, waits on Asio timers, and the
// blocking steps (self-healing actions, store writes of escalations) moved to a separate
// executor so that the I/O threads never block.
//
//   boost::asio::thread_pool blocking(2);
//   mend::Outcome out = co_await mend::run_workflow_async(workflow, task, invoker, &operations,
//                                                         blocking.get_executor());
//
// Backoff waits use real time (an Asio steady_timer) whatever clock the workflow's Env holds;
// tests of timing use the synchronous driver on a manual clock, which runs the same machine.
//
// Lifetimes: `workflow`, `invoker`, `operations` and the blocking executor's context must outlive
// the awaitable. `blocking` must not be an executor of the I/O threads: HttpAgentOperations
// blocks on request_sync(), which would wait for itself there. An invoker that throws fails its
// call (as in the synchronous driver); an exception of the escalation sink fails the escalation
// step only (Outcome::escalation_error).
//
// Thread-safety: as Workflow::run. Many tasks may run concurrently on one io_context.
#ifndef MEND_ASYNC_WORKFLOW_H_
#define MEND_ASYNC_WORKFLOW_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "mend/agent_client.h"
#include "mend/workflow.h"

namespace mend {

boost::asio::awaitable<Outcome> run_workflow_async(const Workflow& workflow, Task task,
                                                   AsyncAgentInvoker& invoker,
                                                   AgentOperations* operations,
                                                   boost::asio::any_io_executor blocking);

}  // namespace mend

#endif  // MEND_ASYNC_WORKFLOW_H_
