// HttpServer (mend/runtime/http_server.h), serving connections: accepting them, TLS handshakes,
// reading requests with their limits, calling the handler and writing its answer or stream. The
// only file of the server with Beast; the responder, start() and stop() are in files of their own
// (http_server_impl.h).
#include "mend/runtime/http_server.h"

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
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <vector>

#include "http_server_impl.h"

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
// While a connection waits for its answer, bytes the client sends on (a next request) are kept
// for later up to this much; beyond it the connection is no longer watched for the client leaving.
constexpr std::size_t kMaxBufferedWhileWaiting = 64 * 1024;

using runtime_detail::Capacity;
using runtime_detail::Exchange;
using runtime_detail::json_error;
using runtime_detail::make_responder;
using runtime_detail::Session;

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

}  // namespace

namespace runtime_detail {

HttpResponse json_error(int status, std::string_view type, std::string_view message) {
  nlohmann::json body = {{"error", {{"type", type}, {"message", message}}}};
  HttpResponse response;
  response.status = status;
  response.headers.push_back({"Content-Type", "application/json"});
  // Invalid UTF-8 from a client (echoed in a message) is replaced rather than thrown on.
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

}  // namespace runtime_detail

HttpResponse HttpServer::Impl::call_handler(const HttpRequest& request) {
  try {
    return handler(request);
  } catch (const std::exception& e) {
    return json_error(500, "processing_failed", e.what());
  } catch (...) {
    return json_error(500, "processing_failed", "the handler threw a non-standard exception");
  }
}

template <class Stream, class Response>
net::awaitable<bool> HttpServer::Impl::write(Stream& stream, Response& response) {
  // Counted before the write: a client that has read the answer must find it counted.
  served.fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ec;
  beast::get_lowest_layer(stream).expires_after(options.read_timeout);
  co_await http::async_write(stream, response, net::redirect_error(net::use_awaitable, ec));
  co_return !ec;
}

template <class Request>
bool HttpServer::Impl::reserved(const Request& req) const {
  if (req.method() != http::verb::get && req.method() != http::verb::head) return false;
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  return std::find(options.reserved_paths.begin(), options.reserved_paths.end(), target) !=
         options.reserved_paths.end();
}

template <class Request>
std::optional<HttpResponse> HttpServer::Impl::screen_header(const Request& req,
                                                            Capacity capacity) const {
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
    MutexLock lock(mu);
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
        MutexLock lock(server->mu);
        session->exchange.reset();
      }
      state->close();
    }
  } finish{this, session.get(), state.get()};

  std::optional<std::string> thrown;
  try {
    async_handler(std::move(request), make_responder(state));
  } catch (const std::exception& e) {
    thrown = e.what();
  } catch (...) {
    thrown = "the handler threw a non-standard exception";
  }
  if (thrown) {
    MutexLock lock(state->mu);
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
      MutexLock lock(state->mu);
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
      MutexLock lock(state->mu);
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
      MutexLock lock(server->mu);
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
      MutexLock lock(mu);
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

}  // namespace mend
