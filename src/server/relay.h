// Internal to mend::server: the relay, a pass-through HTTP listener in front of one agent.
//
// What it is: `relays:` in the configuration opens one extra port per entry. Whatever HTTP
// request arrives there is passed, byte for byte, to the agent (one of its replicas, round
// robin), and the agent's answer is passed back byte for byte. In between, mend's policies run
// as they do for tasks: the agent's circuit breaker admits or refuses the call; a 503, a 429, a
// refused connection or a timeout is classified and retried with the agent's backoff while its
// retry budget allows; when the agent cannot answer, the request goes down the agent's fallback
// chain (and its capability siblings, as a task would); when none can, the client gets the
// degraded answer (200, `Mend-Outcome: degraded`). Answers that took a retry or a fallback carry
// `Mend-Outcome` (and `Mend-Agent`). An agent with `policies.hedging` gets the requests of its
// idempotent task types sent again to another replica when the first call is slow; the first
// answer wins (docs/relay.md, "Hedging"). It is what a user puts in front of an HTTP agent whose
// clients already speak its protocol: no task envelope, no journal entry per request, and the
// speed of a proxy (docs/benchmarks.md compares it with HAProxy and nginx).
//
// How: each of `threads` workers owns an io_context, an acceptor on the shared port
// (SO_REUSEPORT: the kernel spreads connections), its client connections and a pool of
// keep-alive connections to the agents; a request lives on one thread from accept to answer,
// so the hot path takes no lock. Requests are framed by Beast's parser and never re-serialized.
// Counters reach /metrics and GET /v1/agents every 200 ms.
//
// Thread-safety: start(), stop_accepting() and stop() are called from one thread (the daemon's
// lifecycle); everything else runs on the workers' own threads.
#ifndef MEND_SERVER_RELAY_H_
#define MEND_SERVER_RELAY_H_

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "mend/core/agents.h"
#include "mend/core/clock.h"
#include "mend/core/hedging.h"
#include "mend/core/result.h"
#include "mend/core/retry.h"

namespace mend::server_detail {

class DaemonCore;
struct AgentCounters;
struct Generation;

// One agent a relay may pass a request to, resolved against one configuration generation (the
// generation owns everything pointed to).
struct RelayTarget {
  std::string agent;
  AgentRegistry::Entry* entry = nullptr;
  const RetryOptions* retry = nullptr;
  const RetryPolicy* policy = nullptr;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;  // one per replica
  // Per endpoint: the path of the replica's base URL ("/agents/a" of http://h/agents/a/), put
  // before every request's target as the task API does; "" for none.
  std::vector<std::string> base_paths;
  std::string unusable;  // why endpoints is empty ("https", a host that does not resolve)
  AgentCounters* counters = nullptr;
  // Every replica has its endpoint (endpoints[i] is replica i): the agent's balancer picks each
  // call's replica. Else (a replica unusable) calls go round the usable endpoints in turn.
  bool balanced = false;
  // The agent's hedging (policies.hedging: its AgentRegistry::Entry::hedging), when it has one
  // and the relay balances two replicas or more; else null. Shared by the relay's workers and the
  // task API: its latency estimate is of all their calls to the agent, and starts afresh with
  // each configuration generation.
  HedgingPolicy* hedging = nullptr;
};

// The agents a relay tries, in order: its agent, then the candidates a task to it would have.
struct RelayRoute {
  std::vector<RelayTarget> chain;
};

// Builds the route to `agent` under generation `g`. Resolves host names (blocking): call it
// where a configuration is built, not on a worker.
std::shared_ptr<const RelayRoute> build_relay_route(DaemonCore& core, Generation& g,
                                                    const std::string& agent, int max_agents);

struct RelayOptions {
  std::size_t index = 0;  // into Generation::relay_routes
  std::string agent;      // names the relay in logs and metrics
  std::string address = "127.0.0.1";
  unsigned short port = 0;  // 0: any free port
  std::size_t threads = 2;
  std::size_t max_connections = 1024;
  std::size_t max_connections_per_client = 0;  // from one address; 0: no limit
  std::size_t max_request_bytes = std::size_t{1} << 20;
  std::size_t max_response_bytes = std::size_t{64} << 20;
  Duration idle_timeout = std::chrono::seconds(10);  // a client's time to send a whole request
  bool pass_admin = false;  // false: requests for /admin/... are answered 403
};

class Relay {
 public:
  Relay(DaemonCore& core, RelayOptions options);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Binds every worker's acceptor and starts the workers. An error names the address.
  Result<void> start();
  std::string base_url() const;
  // No new connections from now on; requests in flight go on.
  void stop_accepting();
  // Waits up to `drain` for requests in flight, then closes everything and joins the workers.
  void stop(Duration drain);

 private:
  struct Worker;
  class Connection;
  DaemonCore& core_;
  RelayOptions options_;
  unsigned short bound_port_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_RELAY_H_
