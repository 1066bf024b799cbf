// File: mend/server/config.h
//
// The configuration of `mend serve`: one YAML file (docs/configuration.md documents every field;
// examples/mend.yaml is a complete example). Loading it checks everything at once and names each
// problem with file, line and key, so that `mend check-config` can print them all:
//
//   mend::ConfigLoad load = mend::load_config_file("mend.yaml");
//   for (const mend::ConfigProblem& p : load.problems) std::cerr << p.to_string() << "\n";
//   if (!load.config) return 2;               // invalid: nothing of it may be used
//   const mend::Config& config = *load.config;
//
// Unknown keys, wrong types, out-of-range values, unknown agent names in fallback chains,
// duplicate agent names, unknown error types in classifier rules: each is a problem, and any
// problem makes the file invalid (load.config is empty). Problems come in file order. Durations
// are written "250ms", "1.5s", "10m", "2h", "1d", "1h30m" or as a number of seconds; sizes
// "512MiB", "64KiB", "1GB" or a number of bytes (parse_duration, parse_size below). An empty file
// is valid YAML but has no agents, which is a problem.
//
// Policies (retry, breaker, budget, bulkhead, rate limit, call timeout) have the specification's
// defaults, are overridable under the top-level `policies:` and again per agent under
// `agents[i].policies:`; an agent's key replaces the global key of the same name, field by field.
// AgentConfig::policies holds the result of that merge.
//
// Thread-safety: value types; the loader functions are reentrant.
#ifndef MEND_SERVER_CONFIG_H_
#define MEND_SERVER_CONFIG_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/bulkhead.h"
#include "mend/core/circuit_breaker.h"
#include "mend/core/classifier.h"
#include "mend/core/clock.h"
#include "mend/core/degradation.h"
#include "mend/core/escalation.h"
#include "mend/core/health.h"
#include "mend/core/hedging.h"
#include "mend/core/rate_limiter.h"
#include "mend/core/replica_balancer.h"
#include "mend/core/replica_probes.h"
#include "mend/core/replica_scaler.h"
#include "mend/core/retry.h"
#include "mend/core/retry_budget.h"

namespace mend {

// server:
struct ServerConfig {
  std::string address = "127.0.0.1";  // loopback unless told otherwise
  unsigned short port = 7070;         // 0: any free port (the daemon prints which)
  // Bearer token required on mutating API calls. Empty: no token. `token_env: NAME` reads it from
  // the environment variable NAME at load time (preferred: keeps the secret out of the file).
  std::string token;
  bool token_inline = false;  // given as `token:` in the file (not token_env)
  std::size_t max_body_bytes = std::size_t{1} << 20;  // 1 MiB
  Duration read_timeout = std::chrono::seconds(10);   // header and body read time per request
  std::size_t max_connections = 256;
  // From one client address; 0: no limit (behind a proxy every client has the proxy's address).
  std::size_t max_connections_per_client = 64;
  std::size_t threads = 2;                            // I/O threads of the daemon
  std::size_t max_tasks_in_flight = 10000;            // more are answered 503
  Duration task_deadline = std::chrono::minutes(5);   // default deadline of a task
  Duration drain_timeout = std::chrono::seconds(30);  // SIGTERM: wait this long for tasks
  std::size_t max_wait_seconds = 300;                 // longest ?wait= a client may ask for
};

// store:
struct StoreConfig {
  // SQLite file. The loader makes a relative path absolute against the config file's directory;
  // ":memory:" stays as it is.
  std::string path = "mend.db";
  // PostgreSQL instead of the SQLite file: a libpq connection URL (postgresql://user@host:port/db;
  // the password best from ~/.pgpass or PGPASSWORD), the store several nodes can share
  // (docs/cluster.md). Empty (the default): SQLite at `path`.
  std::string url;
  // SQLite: how long a write waits for another program that holds the file's write lock before
  // it fails (and mend says the store is failing). PostgreSQL: how long a call waits for a free
  // pooled connection. Default 5 s.
  Duration busy_timeout = std::chrono::seconds(5);
};

// tasks:
struct TasksConfig {
  // Task types whose call to an agent may be sent again when mend restarted while it was in
  // flight: the agent may then run it twice. A task of another type that was calling an agent
  // ends `interrupted`, saying the agent may have run it; one that was waiting in backoff is
  // resumed whatever its type. Default: none.
  std::vector<std::string> idempotent_types;
  // Finished tasks kept for GET /v1/tasks/ID, in memory (a summary each) and in the store; their
  // Idempotency-Keys are remembered as long. Default 10,000.
  std::size_t retained = 10000;
};

// policies: (global) and agents[i].policies: (overrides)
struct PolicyConfig {
  RetryOptions retry;             // the specification's: 3 retries, base 1 s, cap 60 s
  CircuitBreakerOptions breaker;  // the specification's: 5 failures, 60 s, 3 successes
  std::optional<RetryBudgetOptions> retry_budget;    // absent: no budget
  std::optional<BulkheadOptions> bulkhead;           // absent: AgentConfig::max_concurrent only
  std::optional<RateLimiterOptions> rate_limit;      // absent: no rate limit
  ReplicaBalancerOptions replica_balancing;          // always on (one replica: never ejected)
  std::optional<HedgingOptions> hedging;             // absent: none (the relay's; policies.md)
  Duration call_timeout = std::chrono::seconds(30);  // per call to POST /task
};

// agents[i].probes.{startup,readiness,liveness}
// startup, readiness, liveness (mend/core/replica_probes.h: k8s defaults, and a startup probe that
// allows 5 minutes), and the path they GET.
struct ProbesConfig : ProbeSet {
  std::string path = "/health";
};

// agents[i].replicas: {min, max} and agents[i].scaling: a supervised agent whose replicas mend
// scales between min and max (mend/core/replica_scaler.h has the rules and why of each default).
struct ScalingConfig {
  // min_replicas and max_replicas from `replicas: {min, max}`; the rest from `scaling:`.
  ReplicaScalerOptions scaler;
  // How often mend observes the agent's load and asks the scaler. 1 s.
  Duration interval = std::chrono::seconds(1);
};

// agents[i]
struct AgentConfig {
  std::string name;
  // Exactly one of url and command. url: an agent mend does not start (one URL per replica in
  // `urls`, or `url` for one; replicas is then the number of URLs). command: mend starts
  // `replicas` processes of it, each told its port in the environment variable PORT and the
  // argument substitution "{port}". A command without a '/' is looked up on PATH when started
  // (as execvp does); one with a '/' is made absolute by the loader, against the config file's
  // directory, and must be an executable file.
  std::vector<std::string> urls;
  std::string command;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::string working_dir;  // absolute; default: the config file's directory ("" for url agents)
  std::vector<std::string> capabilities;
  bool generalist = false;
  // Replicas started (for `replicas: {min, max}`, min: those that always run).
  int replicas = 1;
  // Set by `replicas: {min, max}` (supervised agents only): mend starts min replicas and scales
  // between min and max. With scaling.replica_capacity, the agent takes that many calls per
  // replica in service at once (at most max_concurrent, when set).
  std::optional<ScalingConfig> scaling;
  int max_concurrent = 0;                            // 0: unlimited
  std::size_t memory_limit_bytes = 0;                // RSS over it: high_memory_usage; 0: no limit
  Duration stop_timeout = std::chrono::seconds(10);  // SIGTERM, then SIGKILL after this
  ProbesConfig probes;
  PolicyConfig policies;  // global policies merged with this agent's overrides
  bool supervised() const noexcept { return !command.empty(); }
  bool scaled() const noexcept { return scaling.has_value(); }
};

// supervision:
struct SupervisionConfig {
  Duration restart_backoff_initial = std::chrono::seconds(1);  // after the first, immediate, one
  Duration restart_backoff_max = std::chrono::minutes(5);
  Duration restart_backoff_reset = std::chrono::minutes(10);  // stable this long: back to 0
  int intensity_max_restarts = 5;  // restarts allowed within intensity_period before
  Duration intensity_period = std::chrono::minutes(1);  // ... mend escalates (critical)
  Duration ready_timeout = std::chrono::seconds(60);    // wait-for-ready after a restart
};

// escalation.receivers[i]
struct ReceiverConfig {
  std::string name;
  std::string kind;         // webhook, slack, pagerduty, file
  std::string url;          // webhook, slack (the incoming-webhook URL), pagerduty (events URL)
  std::string routing_key;  // pagerduty; `routing_key_env: NAME` reads it at load time
  std::string path;         // file: absolute (resolved like store.path), or "-" for stderr
  std::map<std::string, std::string> headers;  // webhook: extra headers
};

// escalation:
struct EscalationConfig {
  EscalationOptions policy;  // channels, SLAs, war room URL template, fingerprint labels
  // channel -> receiver names
  std::map<std::string, std::vector<std::string>> routes;
  std::vector<ReceiverConfig> receivers;
  Duration delivery_interval = std::chrono::seconds(1);  // outbox pass period
  Duration sla_check_interval = std::chrono::seconds(10);
};

// relays[i]: a pass-through port in front of one agent (docs/relay.md). Read at start: a reload
// keeps the relays as they are (the agents behind them are reloaded).
struct RelayConfig {
  std::string agent;        // the agent it leads to; then that agent's fallback chain
  std::string address;      // IP address; default: server.address
  unsigned short port = 0;  // 0: any free port (the log says which)
  std::size_t threads = 0;  // 0: server.threads
  std::size_t max_response_bytes = std::size_t{64} << 20;  // an agent's answer, at most
  // Pass requests for /admin/... (an agent's admin hooks: chaos, restart, ...) through. Default
  // false: the relay answers them 403, so that its clients cannot reach what only mend should.
  bool pass_admin = false;
};

struct Config {
  std::string source_path;  // the file it was loaded from; "" when parsed from a string
  ServerConfig server;
  StoreConfig store;
  TasksConfig tasks;
  PolicyConfig policies;                   // the global policies (before per-agent overrides)
  std::vector<RuleSpec> classifier_rules;  // tried before the standard rules
  std::vector<AgentConfig> agents;         // in file order; supervised ones start in this order
  std::map<std::string, std::vector<std::string>> fallback_chains;  // agent -> chain
  // Also install the specification's three chains (default_fallback_chains(), mend/core/agents.h).
  // The file may still say `seed_fallback_chains`, its former name.
  bool default_fallback_chains = false;
  DegradationTexts degradation;
  EscalationConfig escalation;
  SupervisionConfig supervision;
  std::vector<RelayConfig> relays;

  const AgentConfig* agent(std::string_view name) const;
};

struct ConfigProblem {
  std::string file;  // as given to the loader
  int line = 0;      // 1-based; 0 when the problem has no place (unreadable file)
  int column = 0;    // 1-based; 0 when unknown
  std::string key;   // dotted path: "agents[2].probes.readiness.period"; "" for the whole file
  std::string message;

  // "mend.yaml:12:5: agents[2].probes.readiness.period: expected a duration such as 10s"
  std::string to_string() const;
};

struct ConfigLoad {
  std::optional<Config> config;  // set only when problems is empty
  std::vector<ConfigProblem> problems;
  // What is valid but unwise (a file others may read that holds a secret inline, a former name
  // of a key or value): said, not refused. "file:line:column: key: message" where it has a place.
  std::vector<std::string> warnings;
  bool ok() const noexcept { return config.has_value(); }
};

// "250ms", "1.5s", "10m", "2h", "1d", compounds such as "1h30m", or a bare number of seconds
// ("30", "0.5"). nullopt for anything else (negative values included).
std::optional<Duration> parse_duration(std::string_view text);
// "512MiB", "64KiB", "1GB" (units B, KB, MB, GB, TB = powers of 1000; KiB, MiB, GiB, TiB =
// powers of 1024; case-insensitive) or a bare number of bytes. nullopt for anything else.
std::optional<std::size_t> parse_size(std::string_view text);

// Reads and checks `path`. Never throws; an unreadable file is one problem.
ConfigLoad load_config_file(const std::string& path);
// Checks YAML text; `source_name` stands for the file in problems, and relative paths are
// resolved against `base_dir` (default: the current directory).
ConfigLoad parse_config(std::string_view yaml, std::string source_name = "<config>",
                        std::string base_dir = "");

}  // namespace mend

#endif  // MEND_SERVER_CONFIG_H_
