// The relay (relay.h): per-thread workers, raw pass-through with mend's policies in between.
#include "relay.h"

#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "daemon_impl.h"
#include "mend/attempt_policy.h"
#include "mend/http_client.h"
#include "mend/random.h"
#include "mend/text.h"

namespace mend::server_detail {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Executor = net::io_context::executor_type;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>, Executor>;
using error_code = boost::system::error_code;

constexpr auto kSweepPeriod = std::chrono::milliseconds(200);
constexpr std::size_t kReadChunk = 16384;
constexpr std::uint32_t kHeaderLimit = 16384;
constexpr auto kPoolIdle = std::chrono::seconds(30);       // an unused agent connection is closed
constexpr auto kPeekAfter = std::chrono::milliseconds(2);  // idle this long: checked at reuse
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// How a relayed request ended, for mend_relay_requests_total.
enum class RelayOutcome : std::uint8_t {
  succeeded,              // the agent answered the first call
  succeeded_after_retry,  // the agent answered a retry
  fallback,               // another agent of the chain answered
  degraded,               // no agent could: the degraded answer
  rejected,               // mend refused the request itself (malformed, too large, upgrade)
  count
};
constexpr std::array<const char*, static_cast<std::size_t>(RelayOutcome::count)> kOutcomeNames = {
    "succeeded", "succeeded_after_retry", "fallback", "degraded", "rejected"};

// Why the relay will not pass a request target on, or "": only origin form ("/path?query"), and
// no path segment that a front end in the agent's place might resolve or decode into another
// path ("." and "..", "%2e", an encoded "/" or "\", a backslash): with a base path, such a
// target could climb out of it, or past the /admin check.
std::string unsafe_target_reason(std::string_view target) {
  if (target.empty() || target.front() != '/') {
    return "the relay takes origin-form targets only (\"/path?query\"), not \"" +
           std::string(target.substr(0, 64)) + "\"";
  }
  const std::string_view path = target.substr(0, target.find_first_of("?#"));
  const std::string lower = ascii_lower(path);
  if (lower.find('\\') != std::string::npos || lower.find("%2f") != std::string::npos ||
      lower.find("%5c") != std::string::npos || lower.find("%2e") != std::string::npos) {
    return "the request path has an encoded '/', '\\' or '.', or a backslash";
  }
  for (std::size_t start = 0; start <= lower.size();) {
    const std::size_t end = std::min(lower.find('/', start), lower.size());
    const std::string_view segment = std::string_view(lower).substr(start, end - start);
    if (segment == "." || segment == "..") return "the request path has a '.' or '..' segment";
    start = end + 1;
  }
  return "";
}

// Whether an origin-form target reaches an agent's admin hooks: its path's first segment is
// "admin", however written (repeated slashes, percent-encoded, any case), as an agent's router
// might read it.
bool is_admin_target(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  while (!target.empty() && target.front() == '/') target.remove_prefix(1);
  std::string segment;
  for (std::size_t i = 0; i < target.size() && segment.size() <= 5; ++i) {
    char c = target[i];
    if (c == '/' || c == ';') break;
    if (c == '%' && i + 2 < target.size()) {
      int value = 0;
      auto [end, err] = std::from_chars(target.data() + i + 1, target.data() + i + 3, value, 16);
      if (err == std::errc() && end == target.data() + i + 3) {
        c = static_cast<char>(value);
        i += 2;
      }
    }
    segment.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return segment == "admin";
}

// Frames an HTTP message without copying it: the relay passes the bytes on as they came, and
// needs from the parser only where the message ends and a few header facts.
template <bool isRequest>
class Framing final : public http::basic_parser<isRequest> {
 public:
  int status = 0;
  bool head_request = false;
  bool idempotent = false;       // GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 9.2.2)
  bool expect_continue = false;  // the client waits for 100 Continue before its body
  bool admin = false;            // the target is /admin or under it (an agent's admin hooks)
  std::string unsafe_target;     // why the target is not passed on ("" when it is fine)
  std::optional<Duration> retry_after;

 private:
  void on_request_impl(http::verb method, beast::string_view, beast::string_view target,
                       int version, error_code& ec) override {
    unsafe_target = unsafe_target_reason(target);
    admin = unsafe_target.empty() && is_admin_target(target);
    // HTTP/1.0 and 1.1 only: Beast reads any "HTTP/d.d", and a request line that says 2.0 or
    // 0.9 means something else than what the relay would pass on.
    if (version != 10 && version != 11) ec = http::error::bad_version;
    head_request = method == http::verb::head;
    idempotent = method == http::verb::get || method == http::verb::head ||
                 method == http::verb::put || method == http::verb::delete_ ||
                 method == http::verb::options || method == http::verb::trace;
  }
  void on_response_impl(int code, beast::string_view, int, error_code&) override { status = code; }
  void on_field_impl(http::field name, beast::string_view, beast::string_view value,
                     error_code&) override {
    if (name == http::field::content_length) {
      ++content_lengths_;
    } else if (name == http::field::transfer_encoding) {
      transfer_encoding_ = true;
    } else if (name == http::field::expect) {
      expect_continue = beast::iequals(value, "100-continue");
    } else if (name == http::field::retry_after) {
      double seconds = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec == std::errc() && end == value.data() + value.size() && seconds >= 0) {
        retry_after = from_seconds(seconds);
      }
    }
  }
  void on_header_impl(error_code& ec) override {
    // Both framings at once is how requests are smuggled past proxies: refused, not passed on.
    if (content_lengths_ > 1 || (content_lengths_ > 0 && transfer_encoding_)) {
      ec = http::error::bad_content_length;
    }
    // A request's codings must end in chunked (RFC 9112 6.3): else its end is unknowable, and
    // an agent that reads it otherwise than mend would take the next request for its body.
    if (isRequest && transfer_encoding_ && !this->chunked()) {
      ec = http::error::bad_transfer_encoding;
    }
  }
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code&) override {
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  int content_lengths_ = 0;
  bool transfer_encoding_ = false;
};

const std::string kNoBase;

std::string_view view(const beast::flat_buffer& b, std::size_t from, std::size_t to) {
  return {static_cast<const char*>(b.data().data()) + from, to - from};
}

// A failed call's transport error as mend's Error, for the classifier.
Error transport_error(const error_code& ec) {
  if (ec == net::error::eof) {
    return Error::from_code(std::make_error_code(std::errc::connection_reset),
                            "the agent closed the connection before it answered");
  }
  if (ec.category() == boost::system::system_category()) {
    return Error::from_code(std::error_code(ec.value(), std::system_category()),
                            "relay call: " + ec.message());
  }
  return Error::classified_as(ErrorType::processing_failed, Severity::medium,
                              "the agent's answer is not valid HTTP: " + ec.message());
}

// Per agent, what a worker counted since its last flush; calls are counted when they end.
struct AgentDelta {
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t retries = 0;
  std::uint64_t fallbacks = 0;
  bool empty() const { return successes == 0 && failures == 0 && retries == 0 && fallbacks == 0; }
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
};

}  // namespace

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

class Relay::Connection : public std::enable_shared_from_this<Relay::Connection> {
 public:
  Connection(Worker& worker, Socket socket, net::ip::address client)
      : w_(worker), socket_(std::move(socket)), client_(client) {
    ++w_.per_client[client_];
    index_ = w_.connections.size();
    w_.connections.push_back(this);
    w_.open.fetch_add(1, std::memory_order_relaxed);
  }
  ~Connection() {
    // Ended mid-call (mend stopping): the breaker hears nothing of it, the budget gets its token.
    settle_ignored();
    give_back_token();
    if (slot_ != nullptr) w_.release_slot(slot_);
    if (up_) close_upstream();
    w_.connections[index_] = w_.connections.back();
    w_.connections[index_]->index_ = index_;
    w_.connections.pop_back();
    if (auto c = w_.per_client.find(client_); c != w_.per_client.end() && --c->second == 0) {
      w_.per_client.erase(c);
    }
    w_.open.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() {
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    begin_request();
  }

  // From the sweep: close what outstayed its time.
  void sweep(TimePoint now) {
    if ((!in_exchange_ || writing_) && now >= read_deadline_) {
      error_code ignored;
      socket_.close(ignored);
    }
    if (up_ && now >= up_->deadline) {
      up_->timed_out = true;
      error_code ignored;
      up_->socket.close(ignored);
    }
  }
  void close_if_idle() {
    if (!in_exchange_ && parsed_ == 0 && in_.size() == 0) {
      error_code ignored;
      socket_.close(ignored);
    }
  }
  void close() {
    error_code ignored;
    socket_.close(ignored);
    if (up_) up_->socket.close(ignored);
    if (delay_) delay_->cancel();
  }

 private:
  const RelayOptions& options() const { return w_.relay.options_; }

  // --- The client's request ------------------------------------------------------------------

  void begin_request() {
    request_.emplace();
    request_->header_limit(kHeaderLimit);
    request_->body_limit(options().max_request_bytes);
    request_->eager(true);
    parsed_ = 0;
    continue_sent_ = false;
    read_deadline_ = w_.clock().coarse_now() + options().idle_timeout;
    if (in_.size() > 0) {
      parse_request();
    } else {
      read_request();
    }
  }

  void read_request() {
    socket_.async_read_some(in_.prepare(kReadChunk),
                            [self = shared_from_this()](const error_code& ec, std::size_t n) {
                              self->on_request_bytes(ec, n);
                            });
  }

  void on_request_bytes(const error_code& ec, std::size_t n) {
    if (ec) return;  // closed, reset, or swept: the connection ends with its last handler
    in_.commit(n);
    parse_request();
  }

  void parse_request() {
    error_code ec;
    const auto bytes = in_.data();
    parsed_ += request_->put(
        net::const_buffer(static_cast<const char*>(bytes.data()) + parsed_, bytes.size() - parsed_),
        ec);
    if (ec == http::error::need_more) {
      read_request();
      return;
    }
    if (ec) {
      if (ec == http::error::body_limit) {
        reject(413, "the request body is larger than server.max_body_bytes");
      } else if (ec == http::error::header_limit) {
        reject(431, "the request header is larger than 16 KiB");
      } else {
        reject(400, "malformed HTTP request: " + ec.message());
      }
      return;
    }
    if (!request_->is_done()) {
      if (request_->is_header_done() && request_->expect_continue && !continue_sent_) {
        // The client holds its body back until told to go on; the agent's own 100 comes too
        // late (mend calls it with the whole request) and is dropped.
        continue_sent_ = true;
        net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                         [self = shared_from_this()](const error_code& written, std::size_t) {
                           if (!written) self->read_request();
                         });
        return;
      }
      read_request();
      return;
    }
    if (request_->upgrade()) {
      reject(501, "the relay does not pass protocol upgrades (WebSocket)");
      return;
    }
    if (!request_->unsafe_target.empty()) {
      reject(400, request_->unsafe_target);
      return;
    }
    if (request_->admin && !options().pass_admin) {
      reject(403,
             "the relay does not pass requests for /admin/ (an agent's admin hooks are "
             "mend's to call; relays[].pass_admin: true passes them)");
      return;
    }
    begin_exchange();
  }

  // Answers the client from mend itself and closes: after a framing error the rest of the
  // stream cannot be trusted.
  void reject(int status, const std::string& why) {
    ++w_.outcomes[static_cast<std::size_t>(RelayOutcome::rejected)];
    const std::string body = nlohmann::json({{"error", why}}).dump();
    own_answer_ =
        "HTTP/1.1 " + std::to_string(status) + " " +
        std::string(http::obsolete_reason(static_cast<http::status>(status))) +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\n\r\n" + body;
    keep_client_ = false;
    in_exchange_ = true;
    w_.active.fetch_add(1, std::memory_order_relaxed);
    start_writing();
    net::async_write(socket_, net::buffer(own_answer_),
                     [self = shared_from_this()](const error_code&, std::size_t) {
                       self->w_.active.fetch_sub(1, std::memory_order_relaxed);
                       error_code ignored;
                       self->socket_.shutdown(tcp::socket::shutdown_send, ignored);
                       // What the client still sends is read and dropped for up to a second:
                       // closing with unread bytes would reset the connection, and the reset
                       // can destroy the answer before the client reads it.
                       self->in_exchange_ = false;
                       self->writing_ = false;
                       self->read_deadline_ =
                           self->w_.clock().coarse_now() + std::chrono::seconds(1);
                       self->in_.clear();
                       self->drain();
                     });
  }

  void drain() {
    socket_.async_read_some(in_.prepare(kReadChunk),
                            [self = shared_from_this()](const error_code& ec, std::size_t) {
                              if (ec) {
                                error_code ignored;
                                self->socket_.close(ignored);
                                return;
                              }
                              self->drain();
                            });
  }

  // --- The exchange: calls along the chain until one answers ---------------------------------

  void begin_exchange() {
    in_exchange_ = true;
    w_.active.fetch_add(1, std::memory_order_relaxed);
    keep_client_ = request_->keep_alive();
    slot_ = w_.acquire_slot();
    target_ = 0;
    attempt_ = 0;
    calls_ = 0;
    previous_delay_ = {};
    next_target();
  }

  const RelayTarget& target() const { return slot_->route->chain[target_]; }
  // The target's breaker and retry policy, in their one order (mend/attempt_policy.h).
  AttemptPolicy attempts() const {
    return AttemptPolicy(&target().entry->breaker, *target().policy);
  }
  AgentDelta& delta() { return slot_->deltas[target_]; }

  // Tries targets from target_ on; the first one that admits a call gets it.
  void next_target() {
    const Clock& clock = w_.clock();
    for (; slot_->route != nullptr && target_ < slot_->route->chain.size(); ++target_) {
      const RelayTarget& t = target();
      if (t.endpoints.empty()) continue;
      if (t.entry->health.load(std::memory_order_relaxed) == HealthState::unhealthy) continue;
      const AttemptPolicy::Admission admission = attempts().admit(clock);
      permit_ = admission.permit;
      if (!admission.allowed()) continue;
      permit_held_ = true;
      attempt_ = 0;
      previous_delay_ = {};
      call();
      return;
    }
    answer_degraded();
  }

  void call() {
    const RelayTarget& t = target();
    replica_ = w_.round_robin++ % t.endpoints.size();
    const tcp::endpoint& endpoint = t.endpoints[replica_];
    const std::size_t slot = w_.endpoint_slot(endpoint);
    ++calls_;
    auto& pool = w_.idle[slot];
    const TimePoint now = w_.clock().coarse_now();
    while (!pool.empty()) {
      std::unique_ptr<Upstream> idle = std::move(pool.back());
      pool.pop_back();
      // Checked only after a pause: a connection in steady use is not stale, and the check
      // costs a system call.
      if (now - idle->pooled_at >= kPeekAfter && !still_open(*idle)) continue;
      up_ = std::move(idle);
      up_->reused = true;
      send_request();
      return;
    }
    up_ = std::make_unique<Upstream>(w_.io.get_executor(), slot);
    up_->deadline = w_.clock().coarse_now() + t.call_timeout;
    up_->socket.async_connect(endpoint, [self = shared_from_this()](const error_code& ec) {
      if (ec) {
        self->call_failed(ec);
        return;
      }
      boost::system::error_code ignored;
      self->up_->socket.set_option(tcp::no_delay(true), ignored);
      self->send_request();
    });
  }

  // A fresh parser for the agent's next answer (a HEAD's answer has no body).
  void begin_response(Upstream& up) {
    up.parser.emplace();
    up.parser->header_limit(kHeaderLimit);
    up.parser->body_limit(options().max_response_bytes);
    up.parser->eager(true);
    up.parser->skip(request_->head_request);
    up.parsed = 0;
  }

  void send_request() {
    up_->deadline = w_.clock().coarse_now() + target().call_timeout;
    up_->timed_out = false;
    begin_response(*up_);
    // The request as it came, but for the replica's base path before its target (origin form
    // only: "/x" goes to "/base/x"); three buffers, nothing copied.
    const char* bytes = static_cast<const char*>(in_.data().data());
    const std::string_view request(bytes, parsed_);
    const RelayTarget& t = target();
    const std::string& base = replica_ < t.base_paths.size() ? t.base_paths[replica_] : kNoBase;
    const std::size_t space = request.find(' ');
    std::size_t split = parsed_;
    if (!base.empty() && space != std::string_view::npos && space + 1 < request.size() &&
        request[space + 1] == '/') {
      split = space + 1;
    }
    const std::array<net::const_buffer, 3> pieces = {
        net::buffer(bytes, split), net::buffer(base.data(), split == parsed_ ? 0 : base.size()),
        net::buffer(bytes + split, parsed_ - split)};
    net::async_write(up_->socket, pieces,
                     [self = shared_from_this()](const error_code& ec, std::size_t) {
                       if (ec) {
                         self->call_failed(ec);
                         return;
                       }
                       self->read_response();
                     });
  }

  void read_response() {
    up_->socket.async_read_some(up_->buffer.prepare(kReadChunk),
                                [self = shared_from_this()](const error_code& ec, std::size_t n) {
                                  self->on_response_bytes(ec, n);
                                });
  }

  void on_response_bytes(error_code ec, std::size_t n) {
    Upstream& up = *up_;
    if (ec == net::error::eof && up.parser->is_header_done() && up.parser->need_eof()) {
      up.parser->put_eof(ec);  // a body delimited by the close
      if (!ec) {
        response_complete();
        return;
      }
    }
    if (ec) {
      call_failed(ec);
      return;
    }
    up.buffer.commit(n);
    const auto bytes = up.buffer.data();
    up.parsed +=
        up.parser->put(net::const_buffer(static_cast<const char*>(bytes.data()) + up.parsed,
                                         bytes.size() - up.parsed),
                       ec);
    if (ec == http::error::need_more || (!ec && !up.parser->is_done())) {
      read_response();
      return;
    }
    if (ec) {
      call_failed(ec);
      return;
    }
    if (up.parser->status >= 100 && up.parser->status < 200 && up.parser->status != 101) {
      // An interim answer (100 Continue): the real one follows.
      up.buffer.consume(up.parsed);
      begin_response(up);
      if (up.buffer.size() > 0) {
        on_response_bytes({}, 0);
      } else {
        read_response();
      }
      return;
    }
    response_complete();
  }

  void response_complete() {
    up_->deadline = TimePoint::max();  // answered: the call timeout no longer applies
    const int status = up_->parser->status;
    if (status == 101) {  // never asked for: the relay refuses upgrades
      failed(Error::classified_as(ErrorType::processing_failed, Severity::medium,
                                  "the agent switched protocols unasked (101)"));
      return;
    }
    // The agent's failures (5xx, 429) are mend's business; any other answer is the client's.
    if (status >= 500 || status == 429) {
      failed(Error::http(status, "the agent answered " + std::to_string(status),
                         up_->parser->retry_after));
      return;
    }
    permit_held_ = false;
    attempts().succeeded(permit_, w_.clock());
    give_back_token();
    RelayOutcome outcome = target_ > 0  ? RelayOutcome::fallback
                           : calls_ > 1 ? RelayOutcome::succeeded_after_retry
                                        : RelayOutcome::succeeded;
    ++delta().successes;
    if (outcome == RelayOutcome::fallback) ++delta().fallbacks;
    finish(outcome);
  }

  void call_failed(const error_code& ec) {
    if (w_.stopping) {
      abandon();
      return;
    }
    if (up_ && up_->reused && !up_->timed_out && up_->parsed == 0 && up_->buffer.size() == 0 &&
        request_->idempotent &&
        (ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe)) {
      // The agent closed an idle keep-alive connection as the request went out: not a failure
      // of the agent. An idempotent request goes again on a fresh connection, uncounted; any
      // other may have been acted on, and takes the policies' way.
      close_upstream();
      --calls_;
      call();
      return;
    }
    failed(up_ && up_->timed_out
               ? Error::classified_as(ErrorType::network_timeout, Severity::medium,
                                      "the agent did not answer within its call timeout")
               : transport_error(ec));
  }

  // The call failed: the breaker hears of it, then retry, next target, or degraded.
  void failed(Error error) {
    if (w_.stopping) {
      abandon();
      return;
    }
    release_upstream();
    give_back_token();
    ++delta().failures;
    const Clock& clock = w_.clock();
    slot_->generation->classifier.classify_in_place(error);
    permit_held_ = false;
    const AttemptDecision d = attempts().failed(
        permit_, error, {.attempt = attempt_, .previous = previous_delay_}, clock, w_.random);
    if (d.token != nullptr) token_held_ = d.token;  // given back when the retry has answered
    if (!d.retry) {
      ++target_;
      next_target();
      return;
    }
    ++delta().retries;
    ++attempt_;
    previous_delay_ = d.delay;
    if (d.delay <= Duration::zero()) {
      retry_now();
      return;
    }
    if (!delay_) delay_.emplace(w_.io.get_executor());
    delay_->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(d.delay));
    delay_->async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || !self->socket_.is_open() || self->w_.stopping) {
        self->abandon();  // mend is stopping
        return;
      }
      self->retry_now();
    });
  }

  // The breaker is asked again: it may have opened while the call waited. An agent its probes
  // marked unhealthy meanwhile is not called again either (as the workflow's retries do).
  void retry_now() {
    const AttemptPolicy::Admission admission = attempts().admit(
        w_.clock(), /*retrying=*/true, target().entry->health.load(std::memory_order_relaxed));
    permit_ = admission.permit;
    permit_held_ = admission.allowed();
    if (!admission.allowed()) {
      give_back_token();
      ++target_;
      next_target();
      return;
    }
    call();
  }

  // A pooled connection the agent closed, or wrote to unasked (a 408 before closing), is of no
  // use: its next bytes would be taken for the answer to a request it never saw.
  static bool still_open(Upstream& up) {
    char byte;
    const ssize_t n = ::recv(up.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  void settle_ignored() {
    if (!permit_held_ || slot_ == nullptr || slot_->route == nullptr) return;
    permit_held_ = false;
    target().entry->breaker.on_ignored(permit_);
  }

  // mend is stopping: the call's end says nothing of the agent; no retry, no fallback.
  void abandon() {
    settle_ignored();
    give_back_token();
    if (up_) close_upstream();
    end_exchange();
    error_code ignored;
    socket_.close(ignored);
  }

  void give_back_token() {
    if (token_held_ != nullptr) std::exchange(token_held_, nullptr)->release_retry();
  }

  // --- Answers -------------------------------------------------------------------------------

  // Passes the agent's answer on as it came, with Mend-Outcome (and Mend-Agent) after its
  // status line when it took more than one plain call.
  void finish(RelayOutcome outcome) {
    ++w_.outcomes[static_cast<std::size_t>(outcome)];
    Upstream& up = *up_;
    keep_client_ = keep_client_ && up.parser->keep_alive();
    const std::string_view raw = view(up.buffer, 0, up.parsed);
    if (outcome == RelayOutcome::succeeded) {
      start_writing();
      net::async_write(
          socket_, net::buffer(raw.data(), raw.size()),
          [self = shared_from_this()](const error_code& ec, std::size_t) { self->answered(ec); });
      return;
    }
    const std::size_t crlf = raw.find("\r\n");
    const std::size_t line_end = crlf == std::string_view::npos ? 0 : crlf + 2;
    own_answer_ =
        "Mend-Outcome: " + std::string(kOutcomeNames[static_cast<std::size_t>(outcome)]) + "\r\n";
    if (outcome == RelayOutcome::fallback) own_answer_ += "Mend-Agent: " + target().agent + "\r\n";
    const std::array<net::const_buffer, 3> parts = {
        net::buffer(raw.data(), line_end), net::buffer(own_answer_),
        net::buffer(raw.data() + line_end, raw.size() - line_end)};
    start_writing();
    net::async_write(
        socket_, parts,
        [self = shared_from_this()](const error_code& ec, std::size_t) { self->answered(ec); });
  }

  // No agent could answer: the degraded service's answer for the request's task type (the
  // agent protocol's "type", when the body is such a task), as a task would get.
  void answer_degraded() {
    ++w_.outcomes[static_cast<std::size_t>(RelayOutcome::degraded)];
    std::string type;
    DegradedService::Fields fields;
    const std::string_view raw = view(in_, 0, parsed_);
    if (const std::size_t body = raw.find("\r\n\r\n"); body != std::string_view::npos) {
      nlohmann::json j = nlohmann::json::parse(raw.substr(body + 4), nullptr, false);
      if (j.is_object()) {
        if (auto it = j.find("type"); it != j.end() && it->is_string()) type = *it;
        const nlohmann::json& payload = j.contains("payload") ? j["payload"] : j;
        if (payload.is_object()) {
          for (const auto& [k, v] : payload.items()) {
            if (v.is_string()) fields[k] = v.get<std::string>();
          }
        }
      }
    }
    std::string body = "{}";
    if (slot_->generation && slot_->generation->degraded) {
      body = slot_->generation->degraded->answer(type, fields).to_json();
    }
    own_answer_ =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMend-Outcome: degraded\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n" + (keep_client_ ? "" : "Connection: close\r\n") +
        "\r\n" + (request_->head_request ? std::string() : body);
    start_writing();
    net::async_write(
        socket_, net::buffer(own_answer_),
        [self = shared_from_this()](const error_code& ec, std::size_t) { self->answered(ec); });
  }

  void answered(const error_code& ec) {
    writing_ = false;
    release_upstream();
    end_exchange();
    if (ec || !keep_client_ || !w_.accepting.load(std::memory_order_relaxed)) {
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      socket_.close(ignored);
      return;
    }
    in_.consume(parsed_);
    begin_request();
  }

  void end_exchange() {
    if (!in_exchange_) return;
    in_exchange_ = false;
    w_.release_slot(slot_);
    slot_ = nullptr;
    w_.active.fetch_sub(1, std::memory_order_relaxed);
  }

  // Back to the pool when its answer ended cleanly and nothing else came with it; else closed.
  void release_upstream() {
    if (!up_) return;
    Upstream& up = *up_;
    if (!up.timed_out && up.parser && up.parser->is_done() && up.parser->keep_alive() &&
        request_->keep_alive() && up.buffer.size() == up.parsed &&
        w_.accepting.load(std::memory_order_relaxed)) {
      up.buffer.consume(up.parsed);
      up.parsed = 0;
      up.pooled_at = w_.clock().coarse_now();
      up.deadline = up.pooled_at + kPoolIdle;
      w_.idle[up.slot].push_back(std::move(up_));
      return;
    }
    close_upstream();
  }

  // Before each write to the client: a client that stops reading is closed by the sweep.
  void start_writing() {
    writing_ = true;
    read_deadline_ = w_.clock().coarse_now() + options().idle_timeout;
  }

  void close_upstream() {
    error_code ignored;
    up_->socket.close(ignored);
    up_.reset();
  }

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
  int attempt_ = 0;          // retries of the current target so far
  int calls_ = 0;            // calls of this request, all targets
  Duration previous_delay_{};
  CircuitBreaker::Permit permit_;
  bool permit_held_ = false;  // permit_ admitted a call the breaker has not heard the end of
  bool continue_sent_ = false;
  RetryBudget* token_held_ = nullptr;
  std::unique_ptr<Upstream> up_;
  std::optional<Timer> delay_;
  std::string own_answer_;  // an answer mend wrote, or the headers it adds
};

// --- Worker ----------------------------------------------------------------------------------

Relay::Worker::Slot* Relay::Worker::acquire_slot() {
  DaemonCore& core = relay.core_;
  const std::uint64_t number = core.generation_number();
  if (!slot || slot->number != number) {
    if (slot) {
      flush(*slot);
      if (slot->users == 0) {
        slot.reset();
      } else {
        retired.push_back(std::move(slot));
      }
    }
    slot = std::make_unique<Slot>();
    slot->number = number;
    slot->generation = core.current();
    if (slot->generation && relay.options_.index < slot->generation->relay_routes.size()) {
      slot->route = slot->generation->relay_routes[relay.options_.index].get();
    }
    slot->deltas.assign(slot->route ? slot->route->chain.size() : 0, AgentDelta{});
  }
  ++slot->users;
  return slot.get();
}

void Relay::Worker::release_slot(Slot* s) {
  if (--s->users > 0 || s == slot.get()) return;
  flush(*s);
  std::erase_if(retired, [s](const std::unique_ptr<Slot>& r) { return r.get() == s; });
}

// Counts go to the daemon's families and its per-agent counters (under their own locks).
void Relay::Worker::flush() {
  DaemonCore& core = relay.core_;
  // The calls first, the requests' outcomes last: whoever sees an outcome counted sees its
  // calls counted too.
  if (slot) flush(*slot);
  for (auto& r : retired) flush(*r);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i] == 0) continue;
    core.m_.relay_requests->with({relay.options_.agent, kOutcomeNames[i]})
        .inc(static_cast<double>(outcomes[i]));
    outcomes[i] = 0;
  }
}

void Relay::Worker::flush(Slot& s) {
  DaemonCore& core = relay.core_;
  if (s.route == nullptr) return;
  for (std::size_t i = 0; i < s.deltas.size() && i < s.route->chain.size(); ++i) {
    AgentDelta& d = s.deltas[i];
    if (d.empty()) continue;
    const RelayTarget& t = s.route->chain[i];
    if (d.successes) {
      core.m_.attempts->with({t.agent, "success"}).inc(static_cast<double>(d.successes));
    }
    if (d.failures)
      core.m_.attempts->with({t.agent, "failure"}).inc(static_cast<double>(d.failures));
    if (d.retries) core.m_.retries->with({t.agent}).inc(static_cast<double>(d.retries));
    if (d.fallbacks) core.m_.fallbacks->with({t.agent}).inc(static_cast<double>(d.fallbacks));
    if (t.counters != nullptr) {
      t.counters->calls.fetch_add(d.successes + d.failures, std::memory_order_relaxed);
      t.counters->failures.fetch_add(d.failures, std::memory_order_relaxed);
      t.counters->retries.fetch_add(d.retries, std::memory_order_relaxed);
      t.counters->answered_as_fallback.fetch_add(d.fallbacks, std::memory_order_relaxed);
    }
    d = AgentDelta{};
  }
}

std::size_t Relay::Worker::endpoint_slot(const tcp::endpoint& e) {
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i] == e) return i;
  }
  endpoints.push_back(e);
  idle.emplace_back();
  return endpoints.size() - 1;
}

void Relay::Worker::accept() {
  acceptor.async_accept([this](const error_code& ec, Socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
        ec == net::error::no_memory || ec.value() == ENFILE) {
      // Out of descriptors or memory: accepting again at once would spin. A pause lets
      // connections end meanwhile.
      accept_pause.expires_after(std::chrono::milliseconds(100));
      accept_pause.async_wait([this](const error_code& e) {
        if (!e && acceptor.is_open()) accept();
      });
      return;
    }
    if (!ec) {
      error_code peer_error;
      net::ip::address client = socket.remote_endpoint(peer_error).address();
      if (client.is_v6() && client.to_v6().is_v4_mapped()) {
        client = net::ip::make_address_v4(net::ip::v4_mapped, client.to_v6());
      }
      const std::size_t per_client_limit = relay.options_.max_connections_per_client;
      const std::size_t workers = relay.workers_.size();
      auto from_client = per_client.find(client);
      const std::size_t held = from_client == per_client.end() ? 0 : from_client->second;
      if (peer_error || connections.size() * workers >= relay.options_.max_connections ||
          (per_client_limit > 0 && held >= std::max<std::size_t>(1, per_client_limit / workers))) {
        error_code ignored;
        socket.close(ignored);  // over a limit: refused at once, as the API server does
      } else {
        std::make_shared<Connection>(*this, std::move(socket), client)->start();
      }
    }
    accept();
  });
}

void Relay::Worker::arm_sweep() {
  sweep.expires_after(kSweepPeriod);
  sweep.async_wait([this](const error_code& ec) {
    if (ec) return;
    run_sweep();
    arm_sweep();
  });
}

void Relay::Worker::run_sweep() {
  const TimePoint now = clock().coarse_now();
  // Copied: a sweep may end a connection, which takes itself out of the list.
  const std::vector<Connection*> now_open = connections;
  for (Connection* c : now_open) c->sweep(now);
  for (auto& pool : idle) {
    std::erase_if(pool, [now](const std::unique_ptr<Upstream>& u) { return now >= u->deadline; });
  }
  flush();
}

// --- Relay -----------------------------------------------------------------------------------

Relay::Relay(DaemonCore& core, RelayOptions options) : core_(core), options_(std::move(options)) {}

Relay::~Relay() {
  stop(Duration::zero());
}

Result<void> Relay::start() {
  const std::size_t threads = std::max<std::size_t>(options_.threads, 1);
  error_code ec;
  const auto address = net::ip::make_address(options_.address, ec);
  if (ec) {
    return Error::of_kind("configuration",
                          "relay for " + options_.agent + ": bad address " + options_.address);
  }
  unsigned short port = options_.port;
  auto cannot_listen = [&] {
    return Error::of_kind("configuration", "relay for " + options_.agent + ": cannot listen on " +
                                               options_.address + ":" + std::to_string(port) +
                                               ": " + ec.message());
  };
  {
    // Claimed first without SO_REUSEPORT: a port another process holds, even one that set
    // SO_REUSEPORT itself (a second mend), is an error here, not a silent share of the traffic.
    net::io_context probe_io;
    tcp::acceptor probe(probe_io);
    const tcp::endpoint endpoint(address, port);
    probe.open(endpoint.protocol(), ec);
    // SO_REUSEADDR, as every listener: connections of a previous run in TIME_WAIT must not
    // keep a restarted mend from its port. A listening socket still does.
    if (!ec) probe.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) probe.bind(endpoint, ec);
    if (ec) return cannot_listen();
    port = probe.local_endpoint().port();
  }
  for (std::size_t i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>(*this, i);
    const tcp::endpoint endpoint(address, port);
    w->acceptor.open(endpoint.protocol(), ec);
    if (!ec) w->acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) {
      // Every worker listens on the same port; the kernel spreads the connections.
      const int on = 1;
      if (::setsockopt(w->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) !=
          0) {
        ec = error_code(errno, boost::system::system_category());
      }
    }
    if (!ec) w->acceptor.bind(endpoint, ec);
    if (!ec) w->acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      workers_.clear();
      return cannot_listen();
    }
    port = w->acceptor.local_endpoint().port();
    workers_.push_back(std::move(w));
  }
  bound_port_ = port;
  for (auto& w : workers_) {
    w->accept();
    w->arm_sweep();
    Worker* worker = w.get();
    w->thread = std::thread([this, worker] {
      for (;;) {
        try {
          worker->io.run();
          return;
        } catch (const std::exception& e) {
          core_.log("error", "relay for " + options_.agent + ": unexpected exception: " + e.what());
        }
      }
    });
  }
  return {};
}

std::string Relay::base_url() const {
  const bool v6 = options_.address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + options_.address + "]" : options_.address) + ":" +
         std::to_string(bound_port_);
}

void Relay::stop_accepting() {
  for (auto& w : workers_) {
    Worker* worker = w.get();
    if (!worker->accepting.exchange(false)) continue;
    net::post(worker->io, [worker] {
      error_code ignored;
      worker->acceptor.close(ignored);
      const std::vector<Connection*> open = worker->connections;
      for (Connection* c : open) c->close_if_idle();
      for (auto& pool : worker->idle) pool.clear();
    });
  }
}

void Relay::stop(Duration drain) {
  if (workers_.empty()) return;
  stop_accepting();
  // Real sleeps below: measured by the clock they really take, not the daemon's.
  const TimePoint until = SystemClock::instance().now() + drain;
  auto busy = [this] {
    for (auto& w : workers_) {
      if (w->active.load(std::memory_order_relaxed) > 0) return true;
    }
    return false;
  };
  for (int i = 0; i < 100000 && busy() && SystemClock::instance().now() < until; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& w : workers_) {
    Worker* worker = w.get();
    net::post(worker->io, [worker] {
      error_code ignored;
      worker->stopping = true;
      worker->sweep.cancel();
      worker->accept_pause.cancel();
      const std::vector<Connection*> open = worker->connections;
      for (Connection* c : open) c->close();
      worker->flush();
    });
  }
  for (auto& w : workers_) {
    // The closes above let every handler end; stop() covers a handler that does not.
    for (int i = 0; i < 300 && w->open.load() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
    w->flush();  // what the last requests counted (the thread has ended: no race)
  }
  workers_.clear();
}

// --- Routes ----------------------------------------------------------------------------------

std::shared_ptr<const RelayRoute> build_relay_route(DaemonCore& core, Generation& g,
                                                    const std::string& agent, int max_agents) {
  auto route = std::make_shared<RelayRoute>();
  std::vector<Candidate> plan = g.agents.plan(agent, {});
  if (max_agents > 0 && plan.size() > static_cast<std::size_t>(max_agents)) plan.resize(max_agents);
  for (const Candidate& c : plan) {
    AgentRegistry::Entry* entry = g.agents.find(c.agent);
    if (entry == nullptr) continue;
    RelayTarget t;
    t.agent = c.agent;
    t.entry = entry;
    t.retry = &g.workflow->retry_options_for(c.agent);
    t.policy = &g.workflow->retry_policy_for(c.agent);
    const AgentConfig* config = g.config.agent(c.agent);
    t.call_timeout = config ? config->policies.call_timeout : g.config.policies.call_timeout;
    t.counters = &core.counters(c.agent);
    for (const std::string& url : entry->info.endpoints) {
      Result<UrlParts> parts = parse_url(url);
      if (!parts.ok()) {
        t.unusable = parts.error().message;
        continue;
      }
      if (parts->scheme != "http") {
        t.unusable =
            "the relay reaches agents over plain HTTP only; " + url + " is " + parts->scheme;
        continue;
      }
      net::io_context io;
      tcp::resolver resolver(io);
      error_code ec;
      auto results = resolver.resolve(parts->host, parts->port, ec);
      if (ec || results.empty()) {
        t.unusable = "cannot resolve " + parts->host + ": " + ec.message();
        continue;
      }
      t.endpoints.push_back(results.begin()->endpoint());
      std::string base = parts->target.substr(0, parts->target.find_first_of("?#"));
      while (!base.empty() && base.back() == '/') base.pop_back();
      t.base_paths.push_back(std::move(base));
    }
    if (!t.unusable.empty()) {
      core.log("warn", "relay for " + agent + ": agent " + c.agent +
                           (t.endpoints.empty() ? " is skipped: " : " has a replica skipped: ") +
                           t.unusable);
    }
    route->chain.push_back(std::move(t));
  }
  if (g.agents.find(agent) == nullptr) {
    core.log("warn", "relay for " + agent + ": the agent is not in the configuration any more; " +
                         "its requests go to the other candidates, or get the degraded answer");
  }
  return route;
}

}  // namespace mend::server_detail
