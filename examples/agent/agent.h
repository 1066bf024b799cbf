// File: examples/agent/agent.h
//
// SampleAgent: a small agent speaking mend's agent protocol (docs/agent-protocol.md) whose
// failures are set by chaos knobs (chaos.h). It is an HttpServer's asynchronous handler, so that
// slow, hung and timed-out answers hold no thread: delays run on timers of its own io_context.
//
//   mend::sample_agent::SampleAgent agent(options, knobs);
//   mend::HttpServer server(server_options, [&agent](mend::HttpRequest request,
//                                                    std::shared_ptr<mend::HttpResponder> r) {
//     agent.handle(std::move(request), std::move(r));
//   });
//
// Endpoints: POST /task, GET /health, GET /stats, GET and POST /admin/chaos, and the admin hooks
// POST /admin/{clear-caches, reset-connections, increase-limits, reconnect-database, restart}.
// README.md says what each answers.
//
// Thread-safety: handle() may be called from any number of threads at once. The agent must
// outlive the server that calls it (stop the server first).
#ifndef MEND_EXAMPLES_AGENT_AGENT_H_
#define MEND_EXAMPLES_AGENT_AGENT_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chaos.h"
#include "mend/core/random.h"
#include "mend/runtime/http_server.h"

namespace mend::sample_agent {

struct AgentOptions {
  // In every task answer ("agent") and in /stats. Default "sample-agent".
  std::string name = "sample-agent";
  // Seeds the failure draws: the same seed and the same tasks give the same failures. 0 (the
  // default): a random seed.
  std::uint64_t seed = 0;
  // The memory budget that /health's memory_percent is measured against: the cache grown by
  // memory_growth_kib. Tasks fail with memory_exhausted when the cache would pass it. 64 MiB.
  std::size_t memory_limit_bytes = std::size_t{64} << 20;
  // Connections the agent pretends to have; /health reports tasks in flight against it. 16.
  int pool_size = 16;
  // When set, every request must carry "Authorization: Bearer <token>" (else 401).
  std::string bearer_token;
  // POST /admin/restart: false (default) restarts in-process (knobs back to `startup`, caches,
  // hung tasks, database and pool reset) and answers 200; true answers 202 and exits with status
  // 0, for a supervisor to start the agent again.
  bool restart_exits = false;
  // How the process ends for crash_after and restart_exits. Default: flush stdio and _Exit.
  std::function<void(int)> exit_process;
};

class SampleAgent {
 public:
  // `startup` are the knobs from the command line: what "reset" and a restart go back to.
  SampleAgent(AgentOptions options, ChaosKnobs startup);
  ~SampleAgent();  // drops pending timers (their tasks are never answered)
  SampleAgent(const SampleAgent&) = delete;
  SampleAgent& operator=(const SampleAgent&) = delete;

  void handle(HttpRequest request, std::shared_ptr<HttpResponder> responder);

 private:
  struct Counters {
    std::int64_t received = 0;
    std::int64_t answered = 0;
    std::int64_t succeeded = 0;
    std::int64_t hung = 0;
    std::map<std::string, std::int64_t> failed;  // by failure kind
    std::map<std::string, std::int64_t> admin_calls;
  };
  // What to do with a task: answer (after a delay) or abort.
  struct Plan {
    bool abort = false;
    std::chrono::milliseconds delay{0};
    HttpResponse answer;
    bool failed = false;
  };

  void on_task(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void finish_task(const std::shared_ptr<HttpResponder>& responder, Plan plan);
  HttpResponse health();
  HttpResponse stats();
  HttpResponse chaos_state();
  HttpResponse set_chaos(const HttpRequest& request);
  void on_admin(const std::string& hook, const HttpRequest& request,
                const std::shared_ptr<HttpResponder>& responder);
  // Exits with `code` once the responder's answer is written (or after a second).
  void exit_after_answer(std::shared_ptr<HttpResponder> responder, int code, std::string why);

  // Called with mu_ held.
  double memory_percent_locked() const;
  int pool_in_use_locked() const;
  nlohmann::json counters_locked() const;

  const AgentOptions options_;
  const ChaosKnobs startup_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  std::mutex mu_;
  ChaosKnobs knobs_;                // guarded by mu_
  std::deque<FailNext> fail_next_;  // guarded by mu_
  SeededRandom random_;             // guarded by mu_
  Counters counters_;               // guarded by mu_
  std::vector<std::string> cache_;  // guarded by mu_; what memory growth allocated
  std::size_t cache_bytes_ = 0;     // guarded by mu_
  int pool_size_;                   // guarded by mu_
  int in_flight_ = 0;               // guarded by mu_; tasks being answered (delays included)
  std::vector<std::shared_ptr<HttpResponder>> hung_;  // guarded by mu_

  // Last: timers die before the state above.
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread timer_thread_;
};

}  // namespace mend::sample_agent

#endif  // MEND_EXAMPLES_AGENT_AGENT_H_
