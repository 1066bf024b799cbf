// File: mend/runtime/agent_client.h
//
// The agent protocol (docs/agent-protocol.md), spoken over HTTP: mend's side of it.
//
//   POST {endpoint}/task     {"id", "type", "attempt", "payload"}  -> 2xx and a JSON answer, or an
//                            error status and {"error": {"type", "message", "retry_after",
//                            "severity"}} (every field optional)
//   GET  {endpoint}/health   -> {"status": "healthy"|"degraded"|"unhealthy", "metrics": {...}}
//   POST {endpoint}/admin/clear-caches | reset-connections | increase-limits |
//                         reconnect-database | restart {"graceful": bool}
//
// `HttpAgentInvoker` calls agents for the workflow, synchronously (mend::AgentInvoker) or on Asio
// coroutines (mend::AsyncAgentInvoker); `HttpAgentOperations` serves self-healing with the health
// and admin endpoints. An error body's type becomes the error's classification, so an agent that
// knows it ran out of memory says so; without one, mend classifies the status code.
//
//   boost::asio::io_context io;  auto work = boost::asio::make_work_guard(io);
//   std::thread runner([&] { io.run(); });
//   mend::HttpClient http(io.get_executor());
//   mend::HttpAgentInvoker invoker(http);
//   mend::Outcome out = workflow.run(task, invoker);
//
// Thread-safety: both classes are safe to use from many threads at once (the HttpClient is).
#ifndef MEND_RUNTIME_AGENT_CLIENT_H_
#define MEND_RUNTIME_AGENT_CLIENT_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "mend/core/agents.h"
#include "mend/core/clock.h"
#include "mend/core/recovery.h"
#include "mend/core/result.h"
#include "mend/core/workflow.h"
#include "mend/runtime/call_cancel.h"
#include "mend/runtime/http.h"
#include "mend/runtime/http_client.h"

namespace mend {

// Calls agents on Asio coroutines; the async workflow driver (mend/runtime/async_workflow.h) uses
// it.
class AsyncAgentInvoker {
 public:
  virtual ~AsyncAgentInvoker() = default;
  virtual boost::asio::awaitable<Result<std::string>> invoke_async(const AgentInfo& agent,
                                                                   int replica, const Task& task,
                                                                   int attempt) = 0;
  // The same call, which `cancel` (never null) may stop before its end: the driver cancels the
  // call of a hedged step that lost (WorkflowStep::hedge_after). A cancelled call should end
  // promptly, its work given up (HttpAgentInvoker closes its connection), with any result (an
  // error of kind "cancelled", typically): the driver no longer reads it. The default makes the
  // call above, which runs to its end; an invoker whose calls can be stopped overrides this one.
  // The driver keeps `agent` and `task` alive until the call ends; the invoker itself must outlive
  // it (the lost call of a hedge may end after its run completed).
  virtual boost::asio::awaitable<Result<std::string>> invoke_async(
      const AgentInfo& agent, int replica, const Task& task, int attempt,
      std::shared_ptr<CallCancel> cancel) {
    (void)cancel;
    return invoke_async(agent, replica, task, attempt);
  }
};

// Deeper nesting than any agent answer, task or API request needs. nlohmann's parser is
// iterative, but dump() and the destructor recurse once per level: a 400 KB "[[[[..." from a
// hostile peer would overflow the stack. Such input is refused before it is parsed.
inline constexpr int kMaxJsonDepth = 64;
// True when `text` nests arrays and objects no deeper than `max_depth` (strings are skipped).
bool json_nesting_within(std::string_view text, int max_depth = kMaxJsonDepth) noexcept;

// Copies the payload's top-level string fields into task.fields (without replacing fields already
// set), so that degraded handlers see "content" and friends. Errors: the payload is not a JSON
// object (validation_failed, kind invalid_task).
Result<void> fill_task_fields(Task& task);

// The body mend POSTs to /task. Errors: the task's payload is not JSON (validation_failed/low).
Result<std::string> task_request_body(const Task& task, int attempt);

// Turns an agent's answer to POST /task into the workflow's result: a 2xx JSON body is the answer
// (compacted); a 2xx body that is not JSON is processing_failed; an error status becomes an
// Error with the status, the body's type/severity/message when it has them, and Retry-After from
// the body or the header.
Result<std::string> interpret_task_response(const HttpResponse& response, const std::string& agent);

// An agent's answer to GET /health as a probe result. 200 and 503 with a JSON "status" are
// answers; anything else is not (answered false, detail says why).
ProbeResult interpret_health_response(const HttpResponse& response);

struct AgentClientOptions {
  // Per call to /task, unless the task sets attempt_timeout. Default 30 s.
  Duration task_timeout = std::chrono::seconds(30);
  Duration probe_timeout = std::chrono::seconds(1);  // k8s probe timeout
  Duration admin_timeout = std::chrono::seconds(10);
  // How often wait_until_ready() probes. Default 1 s.
  Duration ready_poll_interval = std::chrono::seconds(1);
  std::string bearer_token;  // sent as Authorization when set (never logged)
};

class HttpAgentInvoker final : public AgentInvoker, public AsyncAgentInvoker {
 public:
  explicit HttpAgentInvoker(HttpClient& http, AgentClientOptions options = {});
  Result<std::string> invoke(const AgentInfo& agent, int replica, const Task& task,
                             int attempt) override;
  boost::asio::awaitable<Result<std::string>> invoke_async(const AgentInfo& agent, int replica,
                                                           const Task& task, int attempt) override;
  // Cancelling closes the call's connection (HttpClient::request).
  boost::asio::awaitable<Result<std::string>> invoke_async(
      const AgentInfo& agent, int replica, const Task& task, int attempt,
      std::shared_ptr<CallCancel> cancel) override;

 private:
  HttpClient& http_;
  AgentClientOptions options_;
};

// Self-healing's actions over the agents' health and admin endpoints. Admin actions go to every
// replica of the agent; a probe asks every replica and reports the best answer (the agent can
// serve when one replica can). wait_until_ready() polls through `clock` and `sleeper`, so tests
// run it on a manual clock. The daemon (mend serve) extends this with real process restarts for
// the agents it supervises.
class HttpAgentOperations : public AgentOperations {
 public:
  HttpAgentOperations(HttpClient& http, AgentRegistry& agents, const Clock& clock, Sleeper& sleeper,
                      AgentClientOptions options = {});
  ProbeResult probe(const std::string& agent) override;
  Result<void> clear_caches(const std::string& agent) override;
  Result<void> reset_connection_pools(const std::string& agent) override;
  Result<void> increase_connection_limits(const std::string& agent) override;
  Result<void> reconnect_database(const std::string& agent) override;
  Result<void> restart(const std::string& agent, bool graceful) override;
  Result<void> wait_until_ready(const std::string& agent, Duration timeout) override;

 private:
  Result<void> admin(const std::string& agent, const std::string& hook, std::string body);

  HttpClient& http_;
  AgentRegistry& agents_;
  const Clock& clock_;
  Sleeper& sleeper_;
  AgentClientOptions options_;
};

}  // namespace mend

#endif  // MEND_RUNTIME_AGENT_CLIENT_H_
