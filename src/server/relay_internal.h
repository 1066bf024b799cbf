// Internal to the relay's files (relay*.cc): the declarations they share. The Asio names, the
// limits and outcomes of the hot path, a pooled connection to an agent (Upstream), a worker
// thread (Relay::Worker, relay_worker.cc) and a client connection (Relay::Connection), whose
// methods are split by phase: relay_connection.cc (its lifetime, reading the client's request),
// relay_exchange.cc (the calls to the agents, with retries and fallbacks) and relay_answer.cc
// (writing the answer to the client).
#ifndef MEND_SERVER_RELAY_INTERNAL_H_
#define MEND_SERVER_RELAY_INTERNAL_H_

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon_impl.h"
#include "mend/core/attempt_policy.h"
#include "mend/core/random.h"
#include "relay.h"
#include "relay_framing.h"

namespace mend::server_detail {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Executor = net::io_context::executor_type;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>, Executor>;

inline constexpr std::size_t kReadChunk = 16384;
inline constexpr std::uint32_t kHeaderLimit = 16384;

// How a relayed request ended, for mend_relay_requests_total.
enum class RelayOutcome : std::uint8_t {
  succeeded,              // the agent answered the first call
  succeeded_after_retry,  // the agent answered a retry
  hedged,                 // the agent answered a hedge (a second call to another replica)
  fallback,               // another agent of the chain answered
  degraded,               // no agent could: the degraded answer
  rejected,               // mend refused the request itself (malformed, too large, upgrade)
  count
};
inline constexpr std::array<const char*, static_cast<std::size_t>(RelayOutcome::count)>
    kOutcomeNames = {"succeeded", "succeeded_after_retry", "hedged", "fallback", "degraded",
                     "rejected"};

// How a hedge ended, for mend_relay_hedges_total (docs/relay.md, "Hedging").
enum class HedgeResult : std::uint8_t {
  won,      // its answer went to the client; the first call was cancelled
  lost,     // the first call answered first; the hedge was cancelled
  failed,   // the hedge's call failed
  refused,  // the delay passed, but the retry budget or the replicas allowed no hedge
  count
};
inline constexpr std::array<const char*, static_cast<std::size_t>(HedgeResult::count)>
    kHedgeResultNames = {"won", "lost", "failed", "refused"};

// Per agent, what a worker counted since its last flush; calls are counted when they end.
struct AgentDelta {
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t retries = 0;
  std::uint64_t fallbacks = 0;
  // Calls whose end its balancer heard, and their latency: what the agent's scaler reads.
  std::uint64_t ended = 0;
  std::int64_t latency_ns = 0;
  bool empty() const {
    return successes == 0 && failures == 0 && retries == 0 && fallbacks == 0 && ended == 0;
  }
};

// A connection to one agent replica, kept alive between calls.
struct Upstream {
  Upstream(Executor executor, std::size_t endpoint_slot) : socket(executor), slot(endpoint_slot) {}
  Socket socket;
  std::size_t slot;  // the worker's endpoint table index
  beast::flat_buffer buffer;
  std::optional<Framing<false>> parser;
  std::size_t parsed = 0;
  bool reused = false;     // it served a call before: a close before any byte is no failure
  bool timed_out = false;  // the sweep closed it at the call timeout
  TimePoint deadline{};    // of the call in flight; when idle, of its time in the pool
  TimePoint pooled_at{};
  // Numbers the call on it (Connection::serial_): a handler of a call that was cancelled, and
  // whose connection is gone, finds another number (or none) and does nothing.
  std::uint64_t serial = 0;
};

// One thread: its io_context, acceptor, client connections and upstream pool.
struct Relay::Worker {
  Worker(Relay& relay_in, std::size_t id_in)
      : relay(relay_in),
        id(id_in),
        // Seeded from the daemon's source, so that two relays (or two mend nodes) do not draw
        // the same jitter in step.
        random(static_cast<std::uint64_t>(relay_in.core_.random().next_unit() * 0x1p53) ^ id_in),
        acceptor(io),
        sweep(io),
        accept_pause(io) {}

  Relay& relay;
  std::size_t id;
  SeededRandom random;
  // The daemon's clock (DaemonOptions::clock): deadlines, the sweep, the breakers.
  const Clock& clock() const { return relay.core_.clock(); }
  std::thread thread;
  std::atomic<std::size_t> active{0};  // requests between read and answered
  std::atomic<bool> accepting{true};
  bool stopping = false;  // this thread's: stop() has begun closing

  // The generation the worker's requests run under, and the ones still used by requests that
  // started before a reload; freed when their last request ends (counts are this thread's).
  struct Slot {
    std::shared_ptr<Generation> generation;
    const RelayRoute* route = nullptr;
    std::uint64_t number = 0;
    std::size_t users = 0;
    std::vector<AgentDelta> deltas;  // aligned with route->chain
  };
  std::unique_ptr<Slot> slot;
  std::vector<std::unique_ptr<Slot>> retired;
  std::atomic<std::size_t> open{0};  // connections, for stop() on another thread
  std::array<std::uint64_t, static_cast<std::size_t>(RelayOutcome::count)> outcomes{};
  std::array<std::uint64_t, static_cast<std::size_t>(HedgeResult::count)> hedges{};
  CounterFamily* hedge_family = nullptr;  // mend_relay_hedges_total, registered at first use

  std::vector<tcp::endpoint> endpoints;  // endpoint slots of the upstream pool
  std::vector<std::vector<std::unique_ptr<Upstream>>> idle;
  std::uint32_t round_robin = 0;
  std::vector<Connection*> connections;  // for the sweep and stop
  // Open connections by client address (this thread's share of max_connections_per_client).
  std::map<net::ip::address, std::size_t> per_client;

  // Declared last: destroyed first, so that pending handlers (and the connections they own)
  // go while the worker's members are still there.
  net::io_context io{1};
  Acceptor acceptor;
  Timer sweep;
  Timer accept_pause;

  ~Worker() { idle.clear(); }  // before io: a socket must go before its io_context

  Slot* acquire_slot();
  void release_slot(Slot* s);
  void flush();
  void flush(Slot& s);
  std::size_t endpoint_slot(const tcp::endpoint& e);
  void accept();
  void arm_sweep();
  void run_sweep();
};

// A failed call's transport error as mend's Error, for the classifier (relay_exchange.cc).
Error transport_error(const error_code& ec);

// A client's connection: reads a request, passes it along the route, writes the answer, and
// again while the client keeps the connection alive.
class Relay::Connection : public std::enable_shared_from_this<Relay::Connection> {
 public:
  Connection(Worker& worker, Socket socket, net::ip::address client);
  ~Connection();

  void start();
  void sweep(TimePoint now);
  void close_if_idle();
  void close();

 private:
  const RelayOptions& options() const { return w_.relay.options_; }

  // --- The client's request (relay_connection.cc) ------------------------------------------------
  void begin_request();
  void read_request();
  void on_request_bytes(const error_code& ec, std::size_t n);
  void parse_request();
  void reject(int status, const std::string& why);
  void drain();

  // --- The exchange: calls along the chain until one answers (relay_exchange.cc) -----------------
  void begin_exchange();
  const RelayTarget& target() const { return slot_->route->chain[target_]; }
  // The target's breaker, retry policy and call timeout, in their one order
  // (mend/core/attempt_policy.h). Not its rate limiter: the relay does not apply an agent's rate
  // limit, which is a policy of tasks (docs/relay.md lists the policies a relay runs).
  AttemptPolicy attempts() const {
    AgentRegistry::Entry& entry = *target().entry;
    return AttemptPolicy(&entry.breaker, *target().policy, /*rate_limiter=*/nullptr,
                         entry.info.call_timeout);
  }
  // Takes the time limit of the call an admission allowed.
  void admitted(const AttemptPolicy::Admission& admission);
  AgentDelta& delta() { return slot_->deltas[target_]; }
  void next_target();
  void call();
  // A pooled connection to endpoint slot `slot` that is still open, or null.
  std::unique_ptr<Upstream> take_pooled(std::size_t slot, TimePoint now);
  void begin_response(Upstream& up);
  // The request as it came, with replica's base path before its target.
  std::array<net::const_buffer, 3> request_for(std::size_t replica) const;
  void send_request();
  void read_response();
  // What the bytes of an answer came to: more to read, the whole answer, or a failure (ec).
  enum class Parsed : std::uint8_t { more, complete, failed };
  Parsed take_answer(Upstream& up, error_code& ec, std::size_t n);
  bool current(std::uint64_t serial) const { return up_ && up_->serial == serial; }
  void on_response_bytes(error_code ec, std::size_t n);
  void response_complete();
  void call_failed(const error_code& ec);
  void failed(Error error);
  void retry_now();
  void next_replica();
  // The balancer hears how the current call ended (nothing when none is outstanding).
  void report_replica(ReplicaCallResult result);
  static bool still_open(Upstream& up);
  void settle_ignored();
  void abandon();
  void give_back_token();

  // --- Hedging: a second call to another replica when the first is slow (relay_exchange.cc) -----
  // Whether this request is hedged by target(): its agent hedges, has replicas to spare, and the
  // request's task type is one it hedges.
  bool hedged_request();
  void arm_hedge();
  void stop_hedge_timer();
  void launch_hedge();
  void open_hedge(bool pooled);
  void hedge_send();
  void hedge_read();
  bool hedge_current(std::uint64_t serial) const {
    return hedge_.up && hedge_.up->serial == serial;
  }
  void on_hedge_bytes(error_code ec, std::size_t n);
  void hedge_call_failed(const error_code& ec);
  void hedge_failed(Error error);
  void hedge_answered();
  // The first call failed while the hedge is out: counted, and the hedge is waited for.
  void first_failed(Error error);
  // The hedge's call becomes the request's current call (it answered, or both failed).
  void adopt_hedge();
  // Closes a call that lost the race: its connection (never pooled), its replica's pick.
  void cancel_first();
  void cancel_hedge(HedgeResult result);
  void drop_hedge();  // mend is stopping: closed, and nothing counted
  RetryBudget* budget() const { return target().retry ? target().retry->budget.get() : nullptr; }

  // --- Answers (relay_answer.cc) -----------------------------------------------------------------
  void finish(RelayOutcome outcome);
  void answer_degraded();
  void answered(const error_code& ec);
  void end_exchange();
  void release_upstream();
  void release(std::unique_ptr<Upstream>& up);
  void start_writing();
  void close_upstream();

  Worker& w_;
  Socket socket_;
  const net::ip::address client_;  // its share of max_connections_per_client
  std::size_t index_ = 0;          // in w_.connections
  beast::flat_buffer in_;
  std::optional<Framing<true>> request_;
  std::size_t parsed_ = 0;  // bytes of in_ the parser has taken: the request, once done
  TimePoint read_deadline_{};
  bool in_exchange_ = false;
  bool writing_ = false;
  bool keep_client_ = true;
  Worker::Slot* slot_ = nullptr;
  std::size_t target_ = 0;
  std::size_t replica_ = 0;  // of target(): the endpoint the current call went to
  // The balancer's pick for the current call (-1: none outstanding), when target() is balanced,
  // and the replicas of target() this request failed on: its retries go elsewhere when they can
  // (Envoy's previous-hosts rule).
  int picked_ = -1;
  std::vector<int> failed_replicas_;
  TimePoint call_started_{};
  int attempt_ = 0;  // retries of the current target so far
  int calls_ = 0;    // calls of this request, all targets
  Duration previous_delay_{};
  CircuitBreaker::Permit permit_;
  bool permit_held_ = false;    // permit_ admitted a call the breaker has not heard the end of
  Duration call_time_limit_{};  // of the current call: its admission's
  bool continue_sent_ = false;
  RetryBudget* token_held_ = nullptr;
  std::unique_ptr<Upstream> up_;
  std::optional<Timer> delay_;
  std::string own_answer_;  // an answer mend wrote, or the headers it adds

  // Hedging (docs/relay.md, "Hedging").
  struct Hedge {
    std::unique_ptr<Upstream> up;  // while the hedge is out
    int picked = -1;               // its replica, picked from the balancer
    std::size_t replica = 0;
    TimePoint started{};
    RetryBudget* token = nullptr;  // the budget it was paid from: given back when it ends
  };
  std::uint64_t serial_ = 0;              // of the latest call started (Upstream::serial)
  bool hedgeable_ = false;                // of this request, to target()
  std::optional<std::string> task_type_;  // the request's, once read (hedged agents only)
  std::uint64_t hedge_for_ = 0;           // the call the hedge timer waits on (0: none)
  std::optional<Timer> hedge_timer_;
  Hedge hedge_;
  std::optional<Error> first_failure_;  // the first call failed while the hedge was out
  bool answered_by_hedge_ = false;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_RELAY_INTERNAL_H_
