#include "mend/http_server.h"

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

namespace mend {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

constexpr std::uint32_t kMaxRequestHeaderBytes = 32 * 1024;
// After an error answer the rest of the request is read and dropped (within these bounds)
// before closing: closing with unread bytes makes the kernel send a reset, which can destroy the
// answer before the client reads it.
constexpr std::size_t kMaxLingerBytes = std::size_t{64} << 20;
constexpr Duration kMaxLinger = std::chrono::seconds(2);
// How long stop() lets connections wind down before stopping the threads' loop regardless.
constexpr Duration kStopGrace = std::chrono::seconds(5);
// A streamed body with more than this waiting unsent belongs to a client that does not keep up:
// the stream is ended rather than buffered without bound.
constexpr std::size_t kMaxStreamBacklog = std::size_t{1} << 20;
// While a connection waits for its answer, bytes the client sends on (a next request) are kept
// for later up to this much; beyond it the connection is no longer watched for the client leaving.
constexpr std::size_t kMaxBufferedWhileWaiting = 64 * 1024;

Error configuration_error(std::string message) {
  return Error::of_kind("configuration", std::move(message));
}

std::error_code to_std(const boost::system::error_code& ec) {
  if (ec.category() == boost::system::system_category() ||
      ec.category() == boost::system::generic_category()) {
    return {ec.value(), std::system_category()};
  }
  return {};
}

HttpResponse json_error(int status, std::string_view type, std::string_view message) {
  nlohmann::json body = {{"error", {{"type", type}, {"message", message}}}};
  HttpResponse response;
  response.status = status;
  response.headers.push_back({"Content-Type", "application/json"});
  // Invalid UTF-8 from a client (echoed in a message) is replaced rather than thrown on.
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

using http_detail::iequals;

using BeastResponse = http::response<http::string_body>;

// The handler's answer as Beast writes it, or nullopt when it cannot be sent as it is.
std::optional<BeastResponse> to_beast(const HttpResponse& response, unsigned version,
                                      bool keep_alive, bool head, std::string* why) {
  if (response.status < 100 || response.status > 999) {
    *why = "the handler returned the invalid status " + std::to_string(response.status);
    return std::nullopt;
  }
  BeastResponse res;
  res.result(static_cast<unsigned>(response.status));
  res.version(version);
  for (const HttpHeader& h : response.headers) {
    if (!is_http_token(h.name) || !is_valid_header_value(h.value)) {
      *why = "the handler returned an invalid header";
      return std::nullopt;
    }
    // Framing and connection management are the server's.
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Transfer-Encoding") ||
        iequals(h.name, "Connection")) {
      continue;
    }
    res.insert(h.name, h.value);
  }
  res.keep_alive(keep_alive);
  res.body() = response.body;
  try {
    res.prepare_payload();  // throws for a body on a status that forbids one (1xx, 204, 304)
  } catch (const std::exception& e) {
    *why = std::string("the handler's response cannot be sent: ") + e.what();
    return std::nullopt;
  }
  if (head) {
    // The length of the body that GET would have sent, and no body.
    std::size_t length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

struct Exchange;

// Whether a new connection fits the server's limits; one over either is answered 503 from its
// request's header (reserved paths aside) and closed.
enum class Capacity : std::uint8_t { within, over_total, over_client };

struct Session {
  explicit Session(const net::any_io_executor& strand) : executor(strand), waiter(strand) {}
  virtual ~Session() = default;
  // Closes the socket; pending operations end with operation_aborted. Runs on the strand.
  void abort() {
    aborted = true;
    close_socket();
    waiter.cancel();
  }
  // Closes at once with a reset, unsent data dropped: what a crash or a hopeless client gets.
  void reset() {
    boost::system::error_code ignored;
    lowest_socket().set_option(net::socket_base::linger(true, 0), ignored);
    close_socket();
  }
  virtual void close_socket() = 0;
  virtual tcp::socket& lowest_socket() = 0;

  net::any_io_executor executor;  // the connection's strand
  // Where the session waits for its responder and its watch read. Strand only, as are the
  // members below but `exchange`.
  net::steady_timer waiter;
  bool aborted = false;     // by stop()
  bool watching = false;    // a read is pending to notice the client leaving
  bool watch_done = false;  // that read completed and its result was not looked at yet
  boost::system::error_code watch_error;
  std::shared_ptr<Exchange> exchange;  // guarded by Impl::mu; the one in progress
  std::string client;                  // the peer's address, set before the session is registered
};

struct PlainSession final : Session {
  explicit PlainSession(tcp::socket socket)
      : Session(socket.get_executor()), stream(std::move(socket)) {}
  void close_socket() override { stream.close(); }
  tcp::socket& lowest_socket() override { return stream.socket(); }
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

struct TlsSession final : Session {
  TlsSession(tcp::socket socket, ssl::context& context)
      : Session(socket.get_executor()), stream(std::move(socket), context) {}
  void close_socket() override { beast::get_lowest_layer(stream).close(); }
  tcp::socket& lowest_socket() override { return beast::get_lowest_layer(stream).socket(); }
  beast::ssl_stream<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

// One asynchronous request/answer exchange, shared by the session that serves it and the
// HttpResponder the handler holds. Holds no I/O object: the responder may outlive the server.
struct Exchange : std::enable_shared_from_this<Exchange> {
  enum class Phase { kPending, kAnswered, kStreaming, kAborted, kDropped };

  Exchange(net::any_io_executor session_strand, std::string method_and_target)
      : target(std::move(method_and_target)), strand(std::move(session_strand)) {}

  // Asks the session to look at the state again. Called with mu held. Posts nothing once the
  // exchange is closed: then the strand may belong to an io_context that is gone.
  void wake_locked() {
    if (closed || wake_posted || !strand) return;
    wake_posted = true;
    net::post(strand, [self = shared_from_this()] {
      bool hopeless = false;
      {
        std::lock_guard<std::mutex> lock(self->mu);
        self->wake_posted = false;
        hopeless = self->phase == Phase::kAborted || self->overflowed;
      }
      if (self->session == nullptr) return;
      // A write to a client that does not read would hold the session up until its timeout.
      if (hopeless) self->session->reset();
      self->session->waiter.cancel();
    });
  }

  // Ends the exchange: responder calls do nothing from now on.
  void close() {
    std::lock_guard<std::mutex> lock(mu);
    closed = true;
    strand = {};
  }

  const std::string target;

  std::mutex mu;
  Phase phase = Phase::kPending;       // guarded by mu
  std::optional<HttpResponse> answer;  // guarded by mu; set with kAnswered, taken by the session
  int stream_status = 0;               // guarded by mu; set with kStreaming
  std::vector<HttpHeader> stream_headers;  // guarded by mu
  std::string queued;           // guarded by mu; stream bytes not taken by the session yet
  std::size_t unsent = 0;       // guarded by mu; queued + being written
  bool end_requested = false;   // guarded by mu
  bool overflowed = false;      // guarded by mu; the client could not keep up
  bool closed = false;          // guarded by mu
  bool wake_posted = false;     // guarded by mu
  net::any_io_executor strand;  // guarded by mu; empty once closed
  Session* session = nullptr;   // set while the session serves it; strand only
};

// What the asynchronous handler is handed.
class Responder final : public HttpResponder {
 public:
  explicit Responder(std::shared_ptr<Exchange> exchange) : exchange_(std::move(exchange)) {}
  ~Responder() override {
    Exchange& x = *exchange_;
    std::lock_guard<std::mutex> lock(x.mu);
    if (x.phase == Exchange::Phase::kPending) {
      x.phase = Exchange::Phase::kDropped;
      x.wake_locked();
    } else if (x.phase == Exchange::Phase::kStreaming && !x.end_requested) {
      x.end_requested = true;  // a stream nobody can feed any more: end it
      x.wake_locked();
    }
  }
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  void respond(HttpResponse response) override {
    Exchange& x = *exchange_;
    std::lock_guard<std::mutex> lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kPending) return;
    x.answer = std::move(response);
    x.phase = Exchange::Phase::kAnswered;
    x.wake_locked();
  }

  bool start_stream(int status, std::vector<HttpHeader> headers) override {
    Exchange& x = *exchange_;
    std::lock_guard<std::mutex> lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kPending) return false;
    std::string why = stream_header_problem(status, headers);
    if (!why.empty()) {
      x.answer = json_error(500, "processing_failed", why);
      x.phase = Exchange::Phase::kAnswered;
      x.wake_locked();
      return false;
    }
    x.stream_status = status;
    x.stream_headers = std::move(headers);
    x.phase = Exchange::Phase::kStreaming;
    x.wake_locked();
    return true;
  }

  bool send(std::string piece) override {
    Exchange& x = *exchange_;
    std::lock_guard<std::mutex> lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kStreaming || x.end_requested) return false;
    if (x.unsent + piece.size() > kMaxStreamBacklog) {
      x.overflowed = true;
      x.end_requested = true;
      x.wake_locked();
      return false;
    }
    if (piece.empty()) return true;
    x.unsent += piece.size();
    x.queued += piece;
    x.wake_locked();
    return true;
  }

  void end_stream() override {
    Exchange& x = *exchange_;
    std::lock_guard<std::mutex> lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kStreaming || x.end_requested) return;
    x.end_requested = true;
    x.wake_locked();
  }

  void abort() override {
    Exchange& x = *exchange_;
    std::lock_guard<std::mutex> lock(x.mu);
    if (x.closed) return;
    if (x.phase == Exchange::Phase::kPending || x.phase == Exchange::Phase::kStreaming) {
      x.phase = Exchange::Phase::kAborted;
      x.wake_locked();
    }
  }

  bool closed() const override {
    std::lock_guard<std::mutex> lock(exchange_->mu);
    return exchange_->closed;
  }

  const std::string& target() const override { return exchange_->target; }

 private:
  // Why status and headers cannot start a stream, or "".
  static std::string stream_header_problem(int status, const std::vector<HttpHeader>& headers) {
    // 1xx, 204 and 304 have no body to stream.
    if (status < 200 || status > 999 || status == 204 || status == 304) {
      return "the handler started a stream with the invalid status " + std::to_string(status);
    }
    for (const HttpHeader& h : headers) {
      if (!is_http_token(h.name) || !is_valid_header_value(h.value)) {
        return "the handler started a stream with an invalid header";
      }
    }
    return {};
  }

  std::shared_ptr<Exchange> exchange_;
};

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions opts, Handler h) : options(std::move(opts)), handler(std::move(h)) {}
  Impl(HttpServerOptions opts, AsyncHandler h)
      : options(std::move(opts)), async_handler(std::move(h)) {}

  net::awaitable<void> accept_loop();
  template <class S>
  net::awaitable<void> run_session(std::shared_ptr<S> session, Capacity capacity);
  template <class S>
  net::awaitable<void> serve_requests(std::shared_ptr<S> session, Capacity capacity);
  // Hands the request to the asynchronous handler and carries out what its responder asks.
  // Returns whether the connection goes on to its next request.
  template <class S>
  net::awaitable<bool> exchange(std::shared_ptr<S> session, unsigned version, bool keep_alive,
                                bool head, HttpRequest request);
  template <class S>
  void watch(const std::shared_ptr<S>& session);
  template <class S>
  net::awaitable<void> stop_watching(const std::shared_ptr<S>& session);
  template <class Stream>
  net::awaitable<bool> write(Stream& stream, BeastResponse& response);
  template <class Stream>
  net::awaitable<void> answer_and_close(Stream& stream, unsigned version, HttpResponse response);
  // What a request's header alone decides (framing the server does not take, too many
  // connections, the options' screen): an answer to send before its body, and close.
  std::optional<HttpResponse> screen_header(const http::request<http::string_body>& req,
                                            Capacity capacity) const;
  // A GET or HEAD of one of options.reserved_paths (the query aside).
  bool reserved(const http::request<http::string_body>& req) const;
  HttpResponse call_handler(const HttpRequest& request);

  void unregister(const std::shared_ptr<Session>& session) {
    std::lock_guard<std::mutex> lock(mu);
    if (sessions.erase(session) > 0) {
      auto client = per_client.find(session->client);
      if (client != per_client.end() && --client->second == 0) per_client.erase(client);
    }
    cv.notify_all();
  }

  const HttpServerOptions options;
  const Handler handler;  // one of these two is set
  const AsyncHandler async_handler;

  std::mutex mu;
  std::condition_variable cv;
  std::set<std::shared_ptr<Session>> sessions;                 // guarded by mu
  std::map<std::string, std::size_t, std::less<>> per_client;  // guarded by mu: by address
  bool accepting = false;                                      // guarded by mu
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> served{0};
  std::atomic<std::size_t> accepted{0};

  std::mutex lifecycle_mu;  // start() and stop()
  bool started = false;     // guarded by lifecycle_mu
  bool stopped = false;     // guarded by lifecycle_mu
  std::atomic<unsigned short> port{0};
  mutable std::mutex url_mu;  // not lifecycle_mu: a handler may ask while stop() waits for it
  std::string base_url;       // guarded by url_mu

  // Declared after the state above: handlers still pending when the context is destroyed touch
  // it from their destructors.
  std::unique_ptr<ssl::context> tls;
  std::vector<std::thread> threads;
  std::unique_ptr<net::io_context> io;
  std::unique_ptr<tcp::acceptor> acceptor;  // runs on its own strand
};

HttpResponse HttpServer::Impl::call_handler(const HttpRequest& request) {
  try {
    return handler(request);
  } catch (const std::exception& e) {
    return json_error(500, "processing_failed", e.what());
  } catch (...) {
    return json_error(500, "processing_failed", "the handler threw a non-standard exception");
  }
}

template <class Stream>
net::awaitable<bool> HttpServer::Impl::write(Stream& stream, BeastResponse& response) {
  // Counted before the write: a client that has read the answer must find it counted.
  served.fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ec;
  beast::get_lowest_layer(stream).expires_after(options.read_timeout);
  co_await http::async_write(stream, response, net::redirect_error(net::use_awaitable, ec));
  co_return !ec;
}

bool HttpServer::Impl::reserved(const http::request<http::string_body>& req) const {
  if (req.method() != http::verb::get && req.method() != http::verb::head) return false;
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  return std::find(options.reserved_paths.begin(), options.reserved_paths.end(), target) !=
         options.reserved_paths.end();
}

std::optional<HttpResponse> HttpServer::Impl::screen_header(
    const http::request<http::string_body>& req, Capacity capacity) const {
  // RFC 9112 section 6.3: a Transfer-Encoding whose final coding is not chunked leaves the body's
  // end unknown; read as if it had none, its bytes would be taken for the next request. Only
  // "chunked" alone is taken, and never together with a Content-Length.
  std::size_t encodings = 0;
  bool chunked_only = true;
  for (const auto& field : req) {
    if (!iequals(field.name_string(), "Transfer-Encoding")) continue;
    ++encodings;
    std::string_view value = field.value();
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    chunked_only = chunked_only && iequals(value, "chunked");
  }
  if (encodings > 0 && (encodings > 1 || !chunked_only || req.count(http::field::content_length))) {
    return json_error(400, "validation_failed",
                      "unsupported Transfer-Encoding: only 'chunked', alone and without "
                      "Content-Length, is accepted");
  }
  if (capacity == Capacity::over_total && !reserved(req)) {
    return json_error(
        503, "temporary_unavailable",
        "too many connections (limit " + std::to_string(options.max_connections) + ")");
  }
  if (capacity == Capacity::over_client && !reserved(req)) {
    return json_error(503, "temporary_unavailable",
                      "too many connections from this address (limit " +
                          std::to_string(options.max_connections_per_client) + ")");
  }
  if (options.screen) {
    HttpRequest head;
    head.method = std::string(req.method_string());
    head.target = std::string(req.target());
    for (const auto& field : req) {
      head.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    return options.screen(head);
  }
  return std::nullopt;
}

template <class Stream>
net::awaitable<void> HttpServer::Impl::answer_and_close(Stream& stream, unsigned version,
                                                        HttpResponse response) {
  std::string why;
  std::optional<BeastResponse> res =
      to_beast(response, version == 10 ? 10 : 11, /*keep_alive=*/false, /*head=*/false, &why);
  if (!res || !co_await write(stream, *res)) co_return;
  // Linger: read and drop what the client is still sending, so that our close does not reset
  // the connection under the answer. The client closes once it has read the answer.
  boost::system::error_code ec;
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
  beast::get_lowest_layer(stream).expires_after(std::min(options.read_timeout, kMaxLinger));
  std::array<char, 16 * 1024> scratch;
  for (std::size_t drained = 0; drained < kMaxLingerBytes;) {
    ec = {};
    std::size_t n = co_await stream.async_read_some(net::buffer(scratch),
                                                    net::redirect_error(net::use_awaitable, ec));
    if (ec) break;
    drained += n;
  }
}

template <class S>
net::awaitable<void> HttpServer::Impl::serve_requests(std::shared_ptr<S> session,
                                                      Capacity capacity) {
  const bool over_capacity = capacity != Capacity::within;
  auto& stream = session->stream;
  beast::flat_buffer& buffer = session->buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.max_body_bytes);
    parser.header_limit(kMaxRequestHeaderBytes);
    beast::get_lowest_layer(stream).expires_after(options.read_timeout);
    boost::system::error_code ec;
    // The header first: what can be refused from it is refused before any body is read.
    co_await http::async_read_header(stream, buffer, parser,
                                     net::redirect_error(net::use_awaitable, ec));
    if (!ec) {
      std::optional<HttpResponse> refusal = screen_header(parser.get(), capacity);
      if (refusal) {
        co_await answer_and_close(stream, parser.get().version(), std::move(*refusal));
        co_return;
      }
      co_await http::async_read(stream, buffer, parser,
                                net::redirect_error(net::use_awaitable, ec));
    }
    const unsigned version = parser.is_header_done() ? parser.get().version() : 11;
    if (ec == http::error::body_limit) {
      co_await answer_and_close(stream, version,
                                json_error(413, "validation_failed",
                                           "the request body exceeds the limit of " +
                                               std::to_string(options.max_body_bytes) + " bytes"));
      co_return;
    }
    if (ec == http::error::header_limit) {
      co_await answer_and_close(stream, version,
                                json_error(431, "validation_failed",
                                           "the request headers exceed the limit of " +
                                               std::to_string(kMaxRequestHeaderBytes) + " bytes"));
      co_return;
    }
    // A timeout closed the socket (Beast does so), so there is no answering it: idle between
    // requests or stalled within one, the connection just ends.
    if (ec) {
      bool malformed = ec.category() == http::make_error_code(http::error::bad_method).category() &&
                       ec != http::error::end_of_stream && ec != http::error::partial_message;
      if (malformed) {
        co_await answer_and_close(
            stream, version,
            json_error(400, "validation_failed", "malformed HTTP request: " + ec.message()));
      }
      co_return;  // closed, reset or aborted by stop()
    }

    http::request<http::string_body>& req = parser.get();
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    for (const auto& field : req) {
      request.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    request.body = std::move(req.body());

    // Over max_connections only a reserved path (health checks) gets here: it is answered, and
    // the connection closed after it.
    if (async_handler) {
      bool next = co_await exchange(session, req.version(), req.keep_alive() && !over_capacity,
                                    req.method() == http::verb::head, std::move(request));
      if (!next || over_capacity) co_return;
      continue;
    }
    bool keep_alive = req.keep_alive() && !over_capacity && !stopping.load();
    HttpResponse response = call_handler(request);
    std::string why;
    std::optional<BeastResponse> res =
        to_beast(response, req.version(), keep_alive, req.method() == http::verb::head, &why);
    if (!res) {
      keep_alive = false;
      res = to_beast(json_error(500, "processing_failed", why), req.version(), false, false, &why);
    }
    if (!co_await write(stream, *res) || !keep_alive) co_return;
  }
}

template <class S>
void HttpServer::Impl::watch(const std::shared_ptr<S>& session) {
  // Bytes the client sends while it waits are kept in the session's buffer (a next request).
  // No deadline: a write's expires_after() may have set one for reads too. Only the coroutine
  // starts reads and writes, one at a time, so none is pending here.
  beast::get_lowest_layer(session->stream).expires_never();
  session->watching = true;
  session->watch_done = false;
  session->stream.async_read_some(session->buffer.prepare(4096),
                                  [session](boost::system::error_code ec, std::size_t n) {
                                    session->buffer.commit(n);
                                    session->watching = false;
                                    session->watch_done = true;
                                    session->watch_error = ec;
                                    session->waiter.cancel();
                                  });
}

template <class S>
net::awaitable<void> HttpServer::Impl::stop_watching(const std::shared_ptr<S>& session) {
  if (session->watching) beast::get_lowest_layer(session->stream).cancel();
  while (session->watching) {
    session->waiter.expires_at(net::steady_timer::time_point::max());
    boost::system::error_code ignored;
    co_await session->waiter.async_wait(net::redirect_error(net::use_awaitable, ignored));
  }
  session->watch_done = false;  // its end was ours, or data already in the buffer
}

template <class S>
net::awaitable<bool> HttpServer::Impl::exchange(std::shared_ptr<S> session, unsigned version,
                                                bool keep_alive, bool head, HttpRequest request) {
  using Phase = Exchange::Phase;
  auto& stream = session->stream;
  auto& lowest = beast::get_lowest_layer(stream);
  auto state = std::make_shared<Exchange>(session->executor, request.method + " " + request.target);
  {
    std::lock_guard<std::mutex> lock(mu);
    // Read under the lock: stop() sets it before closing the registered exchanges.
    if (stopping.load()) co_return false;
    session->exchange = state;
  }
  state->session = session.get();
  // However this ends (the frame may also be destroyed with the io_context), the responder's
  // calls do nothing afterwards and nothing refers to the session's timer.
  struct Finish {
    Impl* server;
    S* session;
    Exchange* state;
    ~Finish() {
      state->session = nullptr;
      {
        std::lock_guard<std::mutex> lock(server->mu);
        session->exchange.reset();
      }
      state->close();
    }
  } finish{this, session.get(), state.get()};

  std::optional<std::string> thrown;
  try {
    async_handler(std::move(request), std::make_shared<Responder>(state));
  } catch (const std::exception& e) {
    thrown = e.what();
  } catch (...) {
    thrown = "the handler threw a non-standard exception";
  }
  if (thrown) {
    std::lock_guard<std::mutex> lock(state->mu);
    // The responder may have been dropped by the unwinding already.
    if (state->phase == Phase::kPending || state->phase == Phase::kDropped) {
      state->answer = json_error(500, "processing_failed", *thrown);
      state->phase = Phase::kAnswered;
    }
  }

  // The wait for the responder has no deadline (watch() clears it): its holder bounds it.
  bool streaming = false;  // the stream's header was sent
  const bool chunked = version >= 11;
  bool next_request = false;
  for (;;) {
    if (session->aborted) break;  // stop()
    if (session->watch_done) {
      session->watch_done = false;
      if (session->watch_error) break;  // the client left (or reset the connection)
      if (streaming) session->buffer.consume(session->buffer.size());
    }
    if (!session->watching && session->buffer.size() < kMaxBufferedWhileWaiting) watch(session);

    Phase phase;
    std::optional<HttpResponse> answer;
    std::string pieces;
    bool end = false;
    bool overflowed = false;
    int status = 0;
    std::vector<HttpHeader> headers;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      phase = state->phase;
      if (phase == Phase::kAnswered) answer = std::move(state->answer);
      if (phase == Phase::kStreaming) {
        pieces.swap(state->queued);
        end = state->end_requested;
        overflowed = state->overflowed;
        if (!streaming) {
          status = state->stream_status;
          headers = state->stream_headers;
        }
      }
    }

    if (phase == Phase::kPending ||
        (phase == Phase::kStreaming && streaming && pieces.empty() && !end)) {
      session->waiter.expires_at(net::steady_timer::time_point::max());
      boost::system::error_code ignored;
      co_await session->waiter.async_wait(net::redirect_error(net::use_awaitable, ignored));
      continue;
    }
    if (phase == Phase::kAborted || overflowed) {
      session->reset();  // as a crashing process would: no answer, no end of stream
      break;
    }
    if (phase == Phase::kDropped || phase == Phase::kAnswered) {
      HttpResponse response =
          phase == Phase::kDropped
              ? json_error(500, "processing_failed",
                           "the handler dropped its responder without answering")
              : std::move(*answer);
      bool keep = keep_alive && !stopping.load();
      std::string why;
      std::optional<BeastResponse> res = to_beast(response, version, keep, head, &why);
      if (!res) {
        keep = false;
        res = to_beast(json_error(500, "processing_failed", why), version, false, false, &why);
      }
      next_request = co_await write(stream, *res) && keep;
      break;
    }

    // Streaming.
    boost::system::error_code ec;
    if (!streaming) {
      http::response<http::empty_body> header;
      header.result(static_cast<unsigned>(status));
      header.version(version);
      for (const HttpHeader& h : headers) {
        if (iequals(h.name, "Content-Length") || iequals(h.name, "Transfer-Encoding") ||
            iequals(h.name, "Connection")) {
          continue;
        }
        header.insert(h.name, h.value);
      }
      header.keep_alive(false);
      if (chunked) header.chunked(true);
      http::response_serializer<http::empty_body> serializer(header);
      served.fetch_add(1, std::memory_order_relaxed);
      lowest.expires_after(options.read_timeout);
      co_await http::async_write_header(stream, serializer,
                                        net::redirect_error(net::use_awaitable, ec));
      if (ec || head) break;
      streaming = true;
    }
    if (!pieces.empty()) {
      lowest.expires_after(options.read_timeout);
      if (chunked) {
        co_await net::async_write(stream, http::make_chunk(net::buffer(pieces)),
                                  net::redirect_error(net::use_awaitable, ec));
      } else {
        co_await net::async_write(stream, net::buffer(pieces),
                                  net::redirect_error(net::use_awaitable, ec));
      }
      if (ec) break;
      std::lock_guard<std::mutex> lock(state->mu);
      state->unsent -= pieces.size();
      continue;  // more may have come meanwhile, and the end is looked at once all was sent
    }
    if (end) {
      if (chunked) {
        lowest.expires_after(options.read_timeout);
        co_await net::async_write(stream, http::make_chunk_last(),
                                  net::redirect_error(net::use_awaitable, ec));
      }
      break;
    }
  }
  state->close();  // before the wait below: responders learn at once that it is over
  co_await stop_watching(session);
  if (next_request && session->aborted) next_request = false;
  co_return next_request;
}

template <class S>
net::awaitable<void> HttpServer::Impl::run_session(std::shared_ptr<S> session, Capacity capacity) {
  struct Unregister {
    Impl* server;
    std::shared_ptr<Session> session;
    ~Unregister() { server->unregister(session); }
  } unregister_on_exit{this, session};

  auto& stream = session->stream;
  boost::system::error_code ec;
  if constexpr (std::is_same_v<S, TlsSession>) {
    beast::get_lowest_layer(stream).expires_after(options.read_timeout);
    co_await stream.async_handshake(ssl::stream_base::server,
                                    net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
  }
  co_await serve_requests(session, capacity);
  if constexpr (std::is_same_v<S, TlsSession>) {
    beast::get_lowest_layer(stream).expires_after(std::min(options.read_timeout, kMaxLinger));
    ec = {};
    co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
    beast::get_lowest_layer(stream).close();
  } else {
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
  }
}

net::awaitable<void> HttpServer::Impl::accept_loop() {
  struct Done {
    Impl* server;
    ~Done() {
      std::lock_guard<std::mutex> lock(server->mu);
      server->accepting = false;
      server->cv.notify_all();
    }
  } done{this};

  for (;;) {
    tcp::socket socket(net::make_strand(*io));
    boost::system::error_code ec;
    co_await acceptor->async_accept(socket, net::redirect_error(net::use_awaitable, ec));
    if (stopping.load() || !acceptor->is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: pause instead of spinning on the same failure.
      net::steady_timer pause(co_await net::this_coro::executor, std::chrono::milliseconds(50));
      co_await pause.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    accepted.fetch_add(1, std::memory_order_relaxed);
    socket.set_option(tcp::no_delay(true), ec);

    // An IPv4 client reached over an IPv6 socket counts as its IPv4 address.
    net::ip::address peer = socket.remote_endpoint(ec).address();
    if (peer.is_v6() && peer.to_v6().is_v4_mapped()) {
      peer = net::ip::make_address_v4(net::ip::v4_mapped, peer.to_v6());
    }
    std::string client = ec ? std::string() : peer.to_string();

    std::shared_ptr<PlainSession> plain;
    std::shared_ptr<TlsSession> secure;
    std::shared_ptr<Session> session;
    Capacity capacity = Capacity::within;
    {
      std::lock_guard<std::mutex> lock(mu);
      // Read under the lock: stop() sets it before aborting the registered sessions.
      if (stopping.load()) co_return;
      const std::size_t from_client = ++per_client[client];
      if (sessions.size() >= options.max_connections) {
        capacity = Capacity::over_total;
      } else if (options.max_connections_per_client > 0 &&
                 from_client > options.max_connections_per_client) {
        capacity = Capacity::over_client;
      }
      if (tls) {
        secure = std::make_shared<TlsSession>(std::move(socket), *tls);
        session = secure;
      } else {
        plain = std::make_shared<PlainSession>(std::move(socket));
        session = plain;
      }
      session->client = std::move(client);
      sessions.insert(session);
    }
    if (secure) {
      net::co_spawn(secure->executor, run_session(secure, capacity), net::detached);
    } else {
      net::co_spawn(plain->executor, run_session(plain, capacity), net::detached);
    }
  }
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::HttpServer(HttpServerOptions options, AsyncHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  stop();
}

Result<void> HttpServer::start() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lifecycle(s.lifecycle_mu);
  if (s.started) return configuration_error("the HTTP server was started already");
  if (s.stopped) return configuration_error("a stopped HTTP server cannot be started again");
  if (!s.handler && !s.async_handler) {
    return configuration_error("the HTTP server has no handler");
  }
  const HttpServerOptions& o = s.options;

  if (o.tls_cert_pem.empty() != o.tls_key_pem.empty()) {
    return configuration_error("tls_cert_pem and tls_key_pem must be given together");
  }
  std::unique_ptr<ssl::context> tls;
  if (!o.tls_cert_pem.empty()) {
    tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
    boost::system::error_code ec;
    tls->use_certificate_chain(net::buffer(o.tls_cert_pem), ec);
    if (ec) return configuration_error("tls_cert_pem is not a usable certificate: " + ec.message());
    tls->use_private_key(net::buffer(o.tls_key_pem), ssl::context::pem, ec);
    if (ec) return configuration_error("tls_key_pem is not a usable private key: " + ec.message());
    if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
      return configuration_error("tls_key_pem does not match the certificate in tls_cert_pem");
    }
  }

  boost::system::error_code ec;
  net::ip::address address = net::ip::make_address(o.bind_address, ec);
  if (ec) {
    return configuration_error("bind_address \"" + o.bind_address +
                               "\" is not an IPv4 or IPv6 address");
  }
  tcp::endpoint endpoint(address, o.port);
  std::string where = (address.is_v6() ? "[" + o.bind_address + "]" : o.bind_address) + ":" +
                      std::to_string(o.port);

  auto io =
      std::make_unique<net::io_context>(static_cast<int>(std::max<std::size_t>(o.threads, 1)));
  auto acceptor = std::make_unique<tcp::acceptor>(net::make_strand(*io));
  auto fail = [&](std::string_view doing) -> Error {
    Error e = Error::from_code(to_std(ec),
                               "cannot " + std::string(doing) + " " + where + ": " + ec.message());
    e.kind = "configuration";
    return e;
  };
  acceptor->open(endpoint.protocol(), ec);
  if (ec) return fail("open a socket for");
  acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("set SO_REUSEADDR on");
  acceptor->bind(endpoint, ec);
  if (ec) return fail("listen on");
  acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  unsigned short bound = acceptor->local_endpoint(ec).port();
  if (ec) return fail("read the port of");

  s.tls = std::move(tls);
  s.io = std::move(io);
  s.acceptor = std::move(acceptor);
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  {
    std::lock_guard<std::mutex> lock(s.url_mu);
    s.base_url = std::string(s.tls ? "https" : "http") + "://" + host + ":" + std::to_string(bound);
  }
  s.port.store(bound);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.accepting = true;
  }
  net::co_spawn(s.acceptor->get_executor(), s.accept_loop(), net::detached);
  for (std::size_t i = 0; i < std::max<std::size_t>(o.threads, 1); ++i) {
    s.threads.emplace_back([&s] {
      for (;;) {
        try {
          s.io->run();
          return;
        } catch (...) {
          // A completion handler threw: keep serving the other connections.
        }
      }
    });
  }
  s.started = true;
  return {};
}

void HttpServer::stop() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lifecycle(s.lifecycle_mu);
  if (s.stopped) return;
  s.stopped = true;
  if (!s.started) return;
  s.stopping.store(true);
  net::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ignored;
    s.acceptor->close(ignored);
  });
  {
    std::unique_lock<std::mutex> lock(s.mu);
    for (const std::shared_ptr<Session>& session : s.sessions) {
      // Responders learn at once that it is over, and post nothing to a context about to go.
      if (session->exchange) session->exchange->close();
      net::post(session->executor, [session] { session->abort(); });
    }
    s.cv.wait_for(lock, kStopGrace, [&s] { return s.sessions.empty() && !s.accepting; });
  }
  s.io->stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
}

unsigned short HttpServer::port() const {
  return impl_->port.load();
}

std::string HttpServer::base_url() const {
  std::lock_guard<std::mutex> lock(impl_->url_mu);
  return impl_->base_url;
}

std::size_t HttpServer::requests_served() const {
  return impl_->served.load(std::memory_order_relaxed);
}

std::size_t HttpServer::connections_accepted() const {
  return impl_->accepted.load(std::memory_order_relaxed);
}

}  // namespace mend
