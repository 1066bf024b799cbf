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

struct Session {
  virtual ~Session() = default;
  // Closes the socket; pending operations end with operation_aborted. Runs on the strand.
  virtual void abort() = 0;
  net::any_io_executor executor;  // the connection's strand
};

struct PlainSession final : Session {
  explicit PlainSession(tcp::socket socket) : stream(std::move(socket)) {
    executor = stream.get_executor();
  }
  void abort() override { stream.close(); }
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

struct TlsSession final : Session {
  TlsSession(tcp::socket socket, ssl::context& context) : stream(std::move(socket), context) {
    executor = stream.get_executor();
  }
  void abort() override { beast::get_lowest_layer(stream).close(); }
  beast::ssl_stream<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions opts, Handler h) : options(std::move(opts)), handler(std::move(h)) {}

  net::awaitable<void> accept_loop();
  template <class S>
  net::awaitable<void> run_session(std::shared_ptr<S> session, bool over_capacity);
  template <class Stream>
  net::awaitable<void> serve_requests(Stream& stream, beast::flat_buffer& buffer,
                                      bool over_capacity);
  template <class Stream>
  net::awaitable<bool> write(Stream& stream, BeastResponse& response);
  template <class Stream>
  net::awaitable<void> answer_and_close(Stream& stream, unsigned version, HttpResponse response);
  HttpResponse call_handler(const HttpRequest& request);

  void unregister(const std::shared_ptr<Session>& session) {
    std::lock_guard<std::mutex> lock(mu);
    sessions.erase(session);
    cv.notify_all();
  }

  const HttpServerOptions options;
  const Handler handler;

  std::mutex mu;
  std::condition_variable cv;
  std::set<std::shared_ptr<Session>> sessions;  // guarded by mu
  bool accepting = false;                       // guarded by mu
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

template <class Stream>
net::awaitable<void> HttpServer::Impl::serve_requests(Stream& stream, beast::flat_buffer& buffer,
                                                      bool over_capacity) {
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.max_body_bytes);
    parser.header_limit(kMaxRequestHeaderBytes);
    beast::get_lowest_layer(stream).expires_after(options.read_timeout);
    boost::system::error_code ec;
    co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
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

    bool keep_alive = req.keep_alive() && !over_capacity && !stopping.load();
    HttpResponse response = over_capacity
                                ? json_error(503, "temporary_unavailable",
                                             "too many connections (limit " +
                                                 std::to_string(options.max_connections) + ")")
                                : call_handler(request);
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
net::awaitable<void> HttpServer::Impl::run_session(std::shared_ptr<S> session, bool over_capacity) {
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
  co_await serve_requests(stream, session->buffer, over_capacity);
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

    std::shared_ptr<PlainSession> plain;
    std::shared_ptr<TlsSession> secure;
    bool over_capacity = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      // Read under the lock: stop() sets it before aborting the registered sessions.
      if (stopping.load()) co_return;
      over_capacity = sessions.size() >= options.max_connections;
      if (tls) {
        secure = std::make_shared<TlsSession>(std::move(socket), *tls);
        sessions.insert(secure);
      } else {
        plain = std::make_shared<PlainSession>(std::move(socket));
        sessions.insert(plain);
      }
    }
    if (secure) {
      net::co_spawn(secure->executor, run_session(secure, over_capacity), net::detached);
    } else {
      net::co_spawn(plain->executor, run_session(plain, over_capacity), net::detached);
    }
  }
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  stop();
}

Result<void> HttpServer::start() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lifecycle(s.lifecycle_mu);
  if (s.started) return configuration_error("the HTTP server was started already");
  if (s.stopped) return configuration_error("a stopped HTTP server cannot be started again");
  if (!s.handler) return configuration_error("the HTTP server has no handler");
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
