// Internal to mend::server: the parts of the daemon (mend/server/daemon.h) that daemon.cc
// (lifecycle, supervision, background loops) and api.cc (the HTTP API) share.
#ifndef MEND_SERVER_DAEMON_IMPL_H_
#define MEND_SERVER_DAEMON_IMPL_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api_router.h"
#include "daemon_metrics.h"
#include "event_hub.h"
#include "housekeeping.h"
#include "mend/core/agents.h"
#include "mend/core/classifier.h"
#include "mend/core/degradation.h"
#include "mend/core/recovery.h"
#include "mend/core/store.h"
#include "mend/core/thread_annotations.h"
#include "mend/core/workflow.h"
#include "mend/runtime/agent_client.h"
#include "mend/runtime/http_client.h"
#include "mend/runtime/http_server.h"
#include "mend/runtime/notifier.h"
#include "mend/runtime/supervisor.h"
#include "mend/server/config.h"
#include "mend/server/daemon.h"
#include "mend/server/metrics.h"
#include "mend/store/escalation_backlog.h"
#include "mend/store/escalator.h"
#include "mend/store/journal.h"
#include "mend/store/task_writer.h"
#include "replica_set.h"
#include "task_registry.h"

namespace mend::server_detail {

class DaemonCore;
class Relay;
struct RelayRoute;

// How long tasks resumed after a restart wait for every agent to be ready before they start.
inline constexpr Duration kResumeGrace = std::chrono::seconds(30);
// How often the probe and housekeeping loops look at what is due.
inline constexpr Duration kProbeTick = std::chrono::milliseconds(100);

inline double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}
// "1.5 s", for logs.
std::string format_seconds(Duration d);

// Counts a background loop as running for its lifetime.
struct LoopGuard {
  explicit LoopGuard(std::atomic<int>& count) : count_(count) { count_.fetch_add(1); }
  ~LoopGuard() { count_.fetch_sub(1); }
  LoopGuard(const LoopGuard&) = delete;
  LoopGuard& operator=(const LoopGuard&) = delete;
  std::atomic<int>& count_;
};

// Counters per agent, for GET /v1/agents. They survive reloads (keyed by name).
struct AgentCounters {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> answered_as_fallback{0};
  std::atomic<std::uint64_t> restarts{0};
  // What a scaled agent's scaler reads (ReplicaSet::LoadReading): calls out now (the task API's;
  // the daemon adds its balancers' count, which has the relays'), calls refused for
  // want of capacity, connection_pool_exhausted failures, calls ended and their latency (the
  // relays' added at their flushes, every 200 ms).
  std::atomic<int> calls_out{0};
  std::atomic<std::uint64_t> refused_capacity{0};
  std::atomic<std::uint64_t> pool_exhausted{0};
  std::atomic<std::uint64_t> calls_ended{0};
  std::atomic<std::int64_t> latency_ns{0};
};

// Self-healing's actions for the daemon: the agent's admin hooks over HTTP, and for supervised
// agents real process restarts (SIGTERM, stop timeout, SIGKILL) and mend's own connection pool.
class DaemonAgentOperations final : public HttpAgentOperations {
 public:
  DaemonAgentOperations(DaemonCore& core, HttpClient& http, AgentRegistry& agents,
                        AgentClientOptions options);
  Result<void> reset_connection_pools(const std::string& agent) override;
  Result<void> restart(const std::string& agent, bool graceful) override;
  Result<void> wait_until_ready(const std::string& agent, Duration timeout) override;

 private:
  DaemonCore& core_;
  HttpClient& http_;
};

// Calls agents over HTTP, marks each call as out before it goes (before_call), and counts calls,
// failures and attempts. Whether a call may go, and its time limit (task.attempt_timeout), the
// workflow's mend::AttemptPolicy decided: the agent's rate limit and call timeout are in its
// AgentInfo.
class DaemonInvoker final : public AsyncAgentInvoker {
 public:
  DaemonInvoker(DaemonCore& core, HttpClient& http, AgentClientOptions options);
  boost::asio::awaitable<Result<std::string>> invoke_async(const AgentInfo& agent, int replica,
                                                           const Task& task, int attempt) override;
  // A cancelled call (the loser of a hedged step) is counted as attempts{result="cancelled"}, not
  // as a failure. Touches nothing of the invoker once it has started: the lost call of a hedge may
  // end after its generation was let go (it holds the daemon's parts only).
  boost::asio::awaitable<Result<std::string>> invoke_async(
      const AgentInfo& agent, int replica, const Task& task, int attempt,
      std::shared_ptr<CallCancel> cancel) override;

 private:
  DaemonCore& core_;
  HttpAgentInvoker inner_;
};

// The workflow's escalations, through the daemon's backlog (which outlives a reload) and this
// generation's escalator: what the store refuses waits in memory and is written later.
class BackloggedEscalations final : public EscalationSink {
 public:
  BackloggedEscalations(EscalationBacklog& backlog, Escalator& escalator)
      : backlog_(backlog), escalator_(escalator) {}
  Result<EscalationTaken> escalate(const EscalationRequest& request) override {
    return backlog_.escalate(escalator_, request);
  }

 private:
  EscalationBacklog& backlog_;
  Escalator& escalator_;
};

// Forwards the workflow's events to the daemon's metrics and event stream.
class WorkflowEventSink final : public EventSink {
 public:
  explicit WorkflowEventSink(DaemonCore& core) : core_(core) {}
  void emit(const Event& event) noexcept override;

 private:
  DaemonCore& core_;
};

// Everything one configuration wires together. A task holds the generation it started under
// until it finishes, so that a reload never changes the rules under a running task.
struct Generation {
  Config config;
  Classifier classifier;
  Env env;
  AgentRegistry agents;
  std::unique_ptr<DegradedService> degraded;
  std::unique_ptr<SelfHealer> healer;
  std::unique_ptr<Escalator> escalator;
  std::unique_ptr<BackloggedEscalations> escalations;  // the workflow's sink
  std::unique_ptr<NotificationDispatcher> dispatcher;
  std::unique_ptr<DaemonAgentOperations> operations;
  std::unique_ptr<DaemonInvoker> invoker;
  std::unique_ptr<Workflow> workflow;
  // Per relay (Config::relays of the boot configuration, in order): where it leads under this
  // configuration.
  std::vector<std::shared_ptr<const RelayRoute>> relay_routes;
};

class DaemonCore final : public ReplicaSetHost {
 public:
  DaemonCore(Config config, DaemonOptions options);
  ~DaemonCore();

  Result<void> start();
  int wait();
  void stop();
  Result<void> reload(const std::string& path);
  std::string base_url() const;
  // DaemonOptions::clock, or the system clock.
  const Clock& clock() const noexcept { return clock_; }
  // DaemonOptions::random, or a source seeded from the system.
  RandomSource& random() const noexcept { return random_; }

  // --- used by the API (api.cc) -------------------------------------------------------------
  void handle(HttpRequest request, std::shared_ptr<HttpResponder> responder);
  std::shared_ptr<Generation> current() const;
  // Goes up by one each time current() changes: a relay worker re-reads current() only then.
  std::uint64_t generation_number() const noexcept {
    return generation_number_.load(std::memory_order_acquire);
  }
  void log(std::string_view level, const std::string& line);
  void publish(const std::string& kind, const std::string& json);
  AgentCounters& counters(const std::string& agent);
  // Restarts the agent's replicas one after the other; nullopt when mend does not supervise it.
  std::optional<Result<void>> restart_agent(const std::string& agent, bool graceful,
                                            const std::string& reason);
  HttpClient& http() { return *http_; }

  MetricsRegistry metrics;
  DaemonMetrics m_{metrics};  // the families the daemon counts into (daemon_metrics.h)

 private:
  friend class DaemonAgentOperations;
  friend class DaemonInvoker;
  friend class WorkflowEventSink;
  struct ApiContext;

  // `carry`: the generation this one replaces when only the agents' replicas changed (the same
  // configuration): each agent's circuit breaker, balancer (replicas matched by URL) and retry
  // budget go on where they were, rather than afresh as after a reload.
  Result<std::shared_ptr<Generation>> build(const Config& config,
                                            const Generation* carry = nullptr);
  Result<void> start_replicas(const Config& config, bool first);
  // ReplicaSetHost: the agent's replicas changed (under the set's lock).
  bool agent_health(const std::string& agent, const AgentReplicaHealth& health) override;
  void replica_transition(const std::string& agent, const std::string& transition) override {
    log("info", "agent " + agent + ": " + transition);
  }
  void replica_readiness(const std::string& agent, const std::string& url, bool ready) override;
  // Tells each agent's balancer in `g` which of its replicas are ready now (a new generation's
  // balancers start with every replica ready).
  void sync_readiness(Generation& g);
  void on_agent_unhealthy(const std::string& agent, const ProbeResult& probe);
  void on_process_event(const ProcessEvent& event);
  // A line of an agent's output that says its port is taken (EADDRINUSE in any of the usual
  // wordings: strerror's, Node's, Go's, Python's).
  static bool says_port_in_use(std::string_view line);
  // Moves a supervised replica whose port was taken to a free one and starts it there (on the
  // blocking pool: the supervisor's remove() waits).
  void move_replica_port(const std::string& process);
  void register_metrics();
  void on_workflow_event(const Event& event);
  // Durable tasks (api.cc): a task accepted is in the store before the client hears so, every
  // change of its state follows, and a restart resumes or ends what was running.
  void start_task(const std::string& id, Task task, std::shared_ptr<Generation> g);
  void finish_task(const std::string& id, const Outcome& outcome);
  void on_task_finished_stored(const std::string& id, const Outcome& outcome,
                               const std::string& outcome_json, bool stored);
  void respond_task(const std::shared_ptr<HttpResponder>& responder, const TaskView& task,
                    int status, bool replayed);
  void task_waiting(const std::string& id);  // a retry's backoff began: no call is out
  boost::asio::awaitable<void> before_call(const Task& task);
  void forget_unstored_task(const std::string& id, const HttpResponse& answer);
  Result<void> recover_tasks(const Config& config,
                             std::vector<std::pair<std::string, Task>>* resume);
  boost::asio::awaitable<void> resume_tasks(std::vector<std::pair<std::string, Task>> tasks);
  // A writer of the store (the task writer or the escalation backlog) started or stopped
  // failing: /readyz, the log and the event stream follow both together.
  void on_store_health(const std::string& error);
  void retry_escalations(Generation& g, bool now);
  boost::asio::awaitable<void> probe_loop();
  boost::asio::awaitable<void> probe(std::uint64_t epoch, ProbeKind kind);
  boost::asio::awaitable<void> housekeeping_loop();
  void check_memory();
  // Scaling (daemon_replicas.cc): observes the scaled agents, acts on the scalers' decisions,
  // stops retired replicas; a scale-up's replica is started on the blocking pool.
  void scale_replicas(TimePoint now);
  void on_scaling(const ReplicaSet::ScalingStep& step);
  void start_scaled_replica(const std::string& agent);
  void publish_scaling(const std::string& agent, std::string_view action, std::string_view held,
                       int replicas, const std::string& process, const std::string& detail);
  // The replicas in service changed: a generation with the agents' new endpoints.
  void replicas_changed(const std::string& why);
  // What a housekeeping pass over the store did (housekeeping.h), in the log and the metrics.
  void report_store_pass(const StorePassReport& report);
  void report_kept_escalations(const EscalationBacklog::Pass& pass);
  void escalate_agent(const std::string& agent, Severity level, ErrorType type,
                      const std::string& message);
  void shutdown();
  void arm_signals();
  void set_generation(std::shared_ptr<Generation> g);
  // The agent's calls out as its balancers count them, in the current generation and the one
  // before while it lives: the task API's and every relay's (the relay counts nothing else per
  // call, to keep its path free of shared writes).
  int balanced_calls_out(const std::string& agent) const;

  // api.cc
  void register_routes();  // every endpoint of docs/api.md on router_
  void api_submit(const HttpRequest& request, const std::shared_ptr<HttpResponder>& responder);
  void api_task(const std::string& id, double wait_seconds,
                const std::shared_ptr<HttpResponder>& responder);
  void api_tasks(const std::shared_ptr<HttpResponder>& responder);
  void api_agents(const std::string& only, const std::shared_ptr<HttpResponder>& responder);
  void api_circuit(const std::string& agent, const HttpRequest& request,
                   const std::shared_ptr<HttpResponder>& responder);
  void api_records(std::optional<RecordKind> kind, const std::string& query,
                   const std::shared_ptr<HttpResponder>& responder);
  void api_record(std::optional<RecordKind> kind, const std::string& id, const std::string& action,
                  const HttpRequest& request, const std::shared_ptr<HttpResponder>& responder);
  void record_action(std::int64_t number, std::optional<RecordKind> wanted,
                     const std::string& action, const std::string& who, const std::string& id_text,
                     const std::shared_ptr<HttpResponder>& responder);
  void api_readyz(const std::shared_ptr<HttpResponder>& responder);
  void wait_for_task(const std::string& id, double wait_seconds,
                     const std::shared_ptr<HttpResponder>& responder, int status_when_done,
                     bool replayed);
  bool authorized(const HttpRequest& request) const;
  static HttpResponse unauthorized();
  // HttpServerOptions::screen: what a request's header alone refuses.
  std::optional<HttpResponse> screen(const HttpRequest& head) const;

  Config boot_config_;  // what start() runs with (server.*, store.*)
  DaemonOptions options_;
  const Clock& clock_;    // options_.clock or the system clock
  RandomSource& random_;  // options_.random or SeededRandom::system()

  std::unique_ptr<boost::asio::io_context> io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  std::unique_ptr<boost::asio::thread_pool> blocking_;
  std::unique_ptr<boost::asio::signal_set> signals_;  // SIGTERM, SIGINT, SIGHUP
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<Store> store_;  // SqliteStore, or PgStore with store.url
  std::unique_ptr<TaskWriter> task_writer_;
  std::unique_ptr<EscalationBacklog> escalation_backlog_;
  std::unique_ptr<ProcessSupervisor> supervisor_;
  std::unique_ptr<HttpServer> server_;
  EventHub events_;
  ApiRouter router_;  // filled by the constructor, read-only after
  WorkflowEventSink event_sink_{*this};
  std::atomic<bool> housekeeping_busy_{false};   // a delivery/SLA pass is running
  std::atomic<bool> memory_busy_{false};         // a memory watch pass is running
  std::atomic<bool> loops_stop_{false};          // the probe and housekeeping loops end
  std::atomic<bool> supervision_closed_{false};  // shutdown: no more restarts
  std::atomic<int> loops_running_{0};            // probe and housekeeping loops still running

  mutable Mutex generation_mu_;
  std::shared_ptr<Generation> generation_ MEND_GUARDED_BY(generation_mu_);
  // The one before, while calls (the relay's) may still hold it: their replicas' calls out count
  // until they end (balanced_calls_out).
  std::weak_ptr<Generation> previous_generation_ MEND_GUARDED_BY(generation_mu_);
  std::atomic<std::uint64_t> generation_number_{0};
  std::vector<std::unique_ptr<Relay>> relays_;
  Mutex reload_mu_;  // one reload at a time

  ReplicaSet replicas_{clock_, *this};  // every agent's replicas and their probes

  Mutex counters_mu_;
  std::map<std::string, std::unique_ptr<AgentCounters>, std::less<>> counters_
      MEND_GUARDED_BY(counters_mu_);

  TaskRegistry tasks_;                      // the accepted tasks, their keys and waiters, admission
  std::atomic<bool> store_failing_{false};  // task or escalation writes fail: not ready
  std::atomic<bool> task_writes_failing_{false};
  std::atomic<bool> escalation_writes_failing_{false};
  Mutex store_health_mu_;  // orders on_store_health's reports
  Mutex answered_mu_;
  // Clients answered with an outcome whose answer may still be on its way out.
  std::vector<std::shared_ptr<HttpResponder>> answered_ MEND_GUARDED_BY(answered_mu_);

  std::atomic<bool> stopping_{false};
  Mutex state_mu_;
  std::condition_variable state_cv_;
  bool stop_requested_ MEND_GUARDED_BY(state_mu_) = false;
  bool started_ MEND_GUARDED_BY(state_mu_) = false;
  bool finished_ MEND_GUARDED_BY(state_mu_) = false;
  int exit_code_ = 0;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_DAEMON_IMPL_H_
