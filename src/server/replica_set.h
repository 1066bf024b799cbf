// The daemon's replicas: every agent's supervised processes (or, for agents reached by URL, just
// their endpoints), each with its probes on core's rules (mend/core/replica_probes.h), and what
// they say about each agent's health.
//
// It decides and remembers; it does no I/O. The daemon starts and restarts processes, makes the
// probes' HTTP calls and hands their answers here; the set says which probe is due, what a
// probe's answer changed and which process to restart. Epochs tell a probe's answer about a
// process that is gone from one about the process running now. Time comes from the clock it is
// given, so every decision is testable on a manual clock (replica_set_test.cc).
//
//   ReplicaSet replicas(clock, host);
//   replicas.replace(plan.keep, {replica});            // from plan_reconfigure() and new ones
//   for (auto due : replicas.take_due(clock.now(), status_of))
//     if (auto target = replicas.probe_target(due.epoch, due.kind)) { /* GET target->url */ }
//   replicas.record_probe(due.epoch, due.kind, result, clock.now());
//
// Agents with `replicas: {min, max}` are scaled (mend/core/replica_scaler.h, one scaler per agent
// here): observe_scaling() hands each scaler the load the daemon counted and says what to do; a
// scale-up's replica (add_scaled) takes calls only once ready (record_probe's `admitted`), a
// retired one leaves the endpoints at once and is stopped once drained (take_retired):
//
//   replicas.configure_scaling(config, clock.now());   // after replace()
//   for (auto& step : replicas.observe_scaling(clock.now(), loads)) act_on(step);
//   for (auto& process : replicas.take_retired(clock.now(), idle)) stop_then_forget(process);
//
// Thread safety: every member may be called from any thread; one mutex guards the replicas.
// ReplicaSetHost::agent_health is called under that mutex (so that an agent's health follows its
// replicas' changes in order) and must not call back into the set.
#ifndef MEND_SERVER_REPLICA_SET_H_
#define MEND_SERVER_REPLICA_SET_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/health.h"
#include "mend/core/replica_probes.h"
#include "mend/core/replica_scaler.h"
#include "mend/core/thread_annotations.h"
#include "mend/runtime/supervisor.h"
#include "mend/server/config.h"

namespace mend::server_detail {

// A supervised process (or, for agents reached by URL, just an endpoint) and its probes.
struct Replica {
  std::string agent;
  int index = 0;
  std::string process;  // the supervisor's name ("agent#0"); "" for URL agents
  std::string url;      // base URL
  unsigned short port = 0;
  int pid = 0;  // the process the last started event named; 0 after it exited
  ProbesConfig probes;
  // Started, ready, and when each probe is due: core's rules (mend/core/replica_probes.h).
  ReplicaProbes health;
  std::size_t memory_limit = 0;
  bool probed = false;  // a probe has answered (a URL agent's replica is ready before that)
  bool probing = false;
  bool restarting = false;
  bool healing = false;
  // Unique among all replicas, renewed at every start and exit: probes find their replica by it,
  // and the answer of a probe to a process that is gone finds none.
  std::uint64_t epoch = 0;
  std::string last_probe;  // detail of the last probe
  // Takes calls (is among its agent's endpoints). False for a replica a scale-up started, until
  // its readiness probe first says ready (the health recheck), and for one being retired.
  bool in_service = true;
  bool retiring = false;              // a scale-down (or a scale-up given up) stops it once drained
  bool left_endpoints = false;        // retiring, and left out of the endpoints handed out since
  TimePoint retire_by{};              // stopped then, drained or not
  bool port_in_use = false;           // its output said so since it last started (ReplicaSet ports)
  std::vector<TimePoint> port_moves;  // when it was moved to another port, within the window
};

// An agent's health as its replicas make it: as healthy as its best replica.
struct AgentReplicaHealth {
  bool any_ready = false;
  // Every ready replica is ready without a probe's word (an agent mend does not start, not yet
  // probed): "healthy" is then an assumption, and the log says so.
  bool ready_unprobed = true;
};

// What the set tells the daemon while it holds its lock.
class ReplicaSetHost {
 public:
  virtual ~ReplicaSetHost() = default;
  // The agent's replicas changed: its health is now `health`. Returns true when that took the
  // agent from healthy to unhealthy.
  virtual bool agent_health(const std::string& agent, const AgentReplicaHealth& health) = 0;
  // A probe changed one of the agent's replicas (ProbeOutcome::transition), told before the
  // agent's health it leads to: the cause first, then the effect.
  virtual void replica_transition(const std::string& agent, const std::string& transition) = 0;
  // One replica's readiness may have changed (a probe's answer, its process started or exited,
  // mend takes it out to restart it): the replica at `url` is ready, or not, now. The daemon
  // tells the agent's balancer, so that calls leave a replica its probes took out at once,
  // before live traffic would eject it (mend/core/replica_balancer.h).
  virtual void replica_readiness(const std::string& agent, const std::string& url, bool ready) {
    (void)agent;
    (void)url;
    (void)ready;
  }
};

class ReplicaSet {
 public:
  // The supervisor's view of a process, or nullopt when it has none of that name.
  using ProcessLookup = std::function<std::optional<ProcessStatus>(const std::string& process)>;

  ReplicaSet(const Clock& clock, ReplicaSetHost& host);

  // --- configuration -------------------------------------------------------------------------
  // Under a new configuration, against the one before (null at start): the replicas that stay as
  // they are (with the new probe settings and memory limit), and the processes to stop.
  struct Reconfiguration {
    std::vector<Replica> keep;
    std::vector<std::string> to_stop;
  };
  Reconfiguration plan_reconfigure(const Config& config, const Config* before) const;
  // A fresh epoch for a new replica.
  std::uint64_t new_epoch();
  // The replicas become `keep` (found again as they are now: probes and process events went on
  // meanwhile), then `added`.
  void replace(const std::vector<Replica>& keep, std::vector<Replica> added);
  // Tells the host every agent's health again (at start, after a reload).
  void report_health();

  // --- processes -----------------------------------------------------------------------------
  // A process started or exited: its replica's probes start over (started) or stop (exited),
  // under a new epoch. Returns the agent it belongs to, or "" when no replica has that process.
  std::string on_process_event(const ProcessEvent& event);
  // The agent's supervised processes, in order; empty for an agent mend does not start.
  std::vector<std::string> processes_of(const std::string& agent) const;
  // mend is restarting the process: out of traffic, no probes until it starts again.
  void take_out(const std::string& process);

  // --- probes --------------------------------------------------------------------------------
  struct DueProbe {
    std::uint64_t epoch = 0;
    ProbeKind kind = ProbeKind::readiness;
  };
  // The probes due at `now`, each marked in progress. A supervised replica is probed only once
  // the start of the process the supervisor runs has reached the set (its pid is known).
  std::vector<DueProbe> take_due(TimePoint now, const ProcessLookup& status_of);
  struct ProbeTarget {
    std::string url;
    Duration timeout{};
  };
  // Where to send the probe, or nullopt when its replica is gone.
  std::optional<ProbeTarget> probe_target(std::uint64_t epoch, ProbeKind kind) const;
  // What one probe's answer changed.
  struct ProbeOutcome {
    std::string agent;
    std::string transition;  // "ready", "not ready: ...", "... failed N times"; "" for none
    std::optional<std::string> restart_process;  // restart it (startup or liveness threshold)
    bool agent_fell = false;  // its readiness took the agent from healthy to unhealthy
    // A replica a scale-up started is ready: now in service (the scaler counts it). The daemon
    // adds it to the agent's endpoints.
    bool admitted = false;
    int replicas_in_service = 0;  // the agent's, when admitted
  };
  // Records the answer `ok` (detail: what it said) of the probe to replica `epoch`. nullopt when
  // the replica is gone or being restarted: the answer is not about the process running now.
  std::optional<ProbeOutcome> record_probe(std::uint64_t epoch, ProbeKind kind, bool ok,
                                           const std::string& detail, TimePoint now);
  // The probe ended without an answer to record (its coroutine failed).
  void probe_abandoned(std::uint64_t epoch);

  // --- memory --------------------------------------------------------------------------------
  struct OverMemory {
    std::string agent;
    double percent = 0;  // of its memory limit
  };
  // Running supervised replicas over their memory limit, each marked healing (not reported again
  // until healing_done()).
  std::vector<OverMemory> over_memory(const ProcessLookup& status_of);
  void healing_done(const std::string& agent);

  // --- scaling (agents with replicas: {min, max}; mend/core/replica_scaler.h) ----------------
  // What the daemon counts of an agent's load, as totals since it started: the set takes the
  // differences between one observation and the next.
  struct LoadReading {
    int calls_out = 0;
    std::uint64_t refused = 0;         // calls refused for want of capacity
    std::uint64_t pool_exhausted = 0;  // connection_pool_exhausted failures
    std::uint64_t calls_ended = 0;
    Duration latency_sum{};  // of the calls ended
  };
  // A scaler per scaled agent of `config`: kept where the agent's scaling options did not change,
  // else new, counting the agent's replicas in service now. Called after replace().
  void configure_scaling(const Config& config, TimePoint now);
  // The scaled agents (whose load the daemon reads for observe_scaling).
  std::vector<std::string> scaled_agents() const;
  struct ScalingStep {
    std::string agent;
    ScalingDecision decision;
    std::string process;  // scale_down, start_abandoned: the replica taken out of service
  };
  // Asks each scaled agent's scaler whose interval has passed, with its reading in `loads`; the
  // decisions worth an event. A scale_down takes the agent's last added replica in service out
  // of service at once (retiring, stopped once the agent has no call out or after its call
  // timeout); start_abandoned retires the starting replica at once.
  std::vector<ScalingStep> observe_scaling(TimePoint now,
                                           const std::map<std::string, LoadReading>& loads);
  // The lowest replica index the agent does not use: a scale-up's replica.
  int free_index(const std::string& agent) const;
  // A replica a scale-up started: probed, but not in service until ready (record_probe).
  void add_scaled(Replica replica);
  // The scale-up's process could not be started: forgets it and tells the scaler.
  void scale_up_failed(const std::string& agent, const std::string& process, TimePoint now);
  // Retiring replicas to stop now: those left out of the endpoints (endpoints() was called since
  // they retired) whose agent is idle (no call out), or whose drain time is over. Each is returned
  // once; forget() it once stopped.
  std::vector<std::string> take_retired(TimePoint now,
                                        const std::function<bool(const std::string&)>& idle);
  void forget(const std::string& process);
  // Every agent's replicas in service: its endpoints, in order, for a new generation. The retiring
  // replicas it leaves out may be stopped once their agent is idle (take_retired).
  std::map<std::string, std::vector<std::string>> endpoints();
  // Replicas in service per agent (every agent with replicas).
  std::map<std::string, int> in_service_counts() const;

  // --- ports ---------------------------------------------------------------------------------
  // A supervised replica whose process could not listen on its port (it said "address already in
  // use": another program took the port between mend's choice and its bind) is moved to another
  // port rather than restarted on the same one, at most kMaxPortMoves times per
  // kPortMoveWindow (an agent that always says so, a fixed port in its args, is left to crash-loop
  // supervision). The daemon hears what it says (port_in_use) and when it exits (take_port_move).
  static constexpr int kMaxPortMoves = 3;
  static constexpr Duration kPortMoveWindow = std::chrono::minutes(10);
  // Its output said that its port is in use.
  void port_in_use(const std::string& process);
  // At its exit: whether to move it to another port now (its output said so and the limit
  // allows it; counted as a move). The mark is consumed either way.
  bool take_port_move(const std::string& process, TimePoint now);
  // It listens on `port` from its next start (the daemon restarts it there): its URL changes, its
  // probes start over under a new epoch. False when no replica has that process.
  bool move_port(const std::string& process, unsigned short port);

  // --- reading -------------------------------------------------------------------------------
  // Ready replicas per agent (every agent with replicas, 0 included).
  std::map<std::string, int> ready_counts() const;
  // Every agent has at least one ready replica.
  bool every_agent_ready() const;
  std::vector<Replica> snapshot() const;

 private:
  Replica* by_epoch(std::uint64_t epoch) MEND_REQUIRES(mu_);
  const Replica* by_epoch(std::uint64_t epoch) const MEND_REQUIRES(mu_);
  bool report_agent(const std::string& agent) MEND_REQUIRES(mu_);

  const Clock& clock_;
  ReplicaSetHost& host_;
  mutable Mutex mu_;
  std::vector<Replica> replicas_ MEND_GUARDED_BY(mu_);
  std::uint64_t next_epoch_ MEND_GUARDED_BY(mu_) = 1;

  struct Scaling {
    ReplicaScaler scaler;
    ReplicaScalerOptions options;
    Duration interval{};
    Duration drain{};  // how long a retiring replica's calls may take: the call timeout
    TimePoint next{};  // the next observation
    LoadReading last;  // the totals at the last observation
  };
  std::map<std::string, Scaling> scaling_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_REPLICA_SET_H_
