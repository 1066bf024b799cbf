// HttpClient (mend/runtime/http_client.h): connections and their pool, TLS, and one call:
// connecting, sending the request and reading the response, whole (request()) or piece by piece as
// it comes (request_stream()), with Beast. URLs are taken apart in http_url.cc.
#include "mend/runtime/http_client.h"

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>

#include "http_client_errors.h"
#include "mend/core/thread_annotations.h"

namespace mend {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using SteadyTime = std::chrono::steady_clock::time_point;

// Headers larger than this are a malformed response, not something to buffer without end.
constexpr std::uint32_t kMaxResponseHeaderBytes = 64 * 1024;

using http_detail::iequals;

using runtime_detail::configuration_error;
using runtime_detail::printable;

std::string describe_duration(Duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms < 1000) return std::to_string(ms) + " ms";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms) / 1000.0);
  return text;
}

// An errno from Asio, as a std::error_code the classifier compares with std::errc values.
std::error_code to_std(const boost::system::error_code& ec) {
  if (ec.category() == boost::system::system_category() ||
      ec.category() == boost::system::generic_category()) {
    return {ec.value(), std::system_category()};
  }
  return {};
}

// now + d, saturating: a caller's Duration::max() means "no limit", not an overflow.
SteadyTime deadline_after(Duration d) {
  SteadyTime now = std::chrono::steady_clock::now();
  return d >= SteadyTime::max() - now ? SteadyTime::max() : now + d;
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

// The peer went away: what a pooled connection that the server closed meanwhile looks like.
bool is_closed_by_peer(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::connection_aborted || ec == net::error::broken_pipe ||
         ec == net::error::not_connected || ec == net::ssl::error::stream_truncated;
}

struct Connection {
  Connection(net::any_io_executor strand, ssl::context* tls_context) : executor(strand) {
    if (tls_context != nullptr) {
      tls.emplace(strand, *tls_context);
    } else {
      plain.emplace(strand);
    }
  }
  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  net::any_io_executor executor;  // a strand: every operation on the streams runs on it
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;  // bytes read past the previous response stay here
  // The call's CallCancel closed it (on the strand): nothing more is done on it.
  bool cancelled = false;
};

// One call, prepared once and sent once or twice (a retry after a stale pooled connection).
struct Call {
  std::string method;
  std::string url;
  UrlParts url_parts;
  std::string pool_key;
  bool tls = false;
  bool head = false;
  Duration timeout{};
  SteadyTime deadline{};
  http::request<http::string_body> request;

  std::string what() const { return method + " " + printable(without_credentials(url)); }
};

// The outcome of one try on one connection. Default-constructible, as co_spawn requires.
struct Exchange {
  std::optional<Result<HttpResponse>> result;
  bool stale = false;     // a pooled connection failed before any byte of the response: retry
  bool reusable = false;  // the connection may go back to the pool
};

Error timeout_error(const Call& call) {
  Error e = Error::from_code(std::make_error_code(std::errc::timed_out),
                             call.what() + " timed out after " + describe_duration(call.timeout));
  e.kind = "timeout";
  return e;
}

Error cancelled_error(const Call& call) {
  Error e = Error::from_code(std::make_error_code(std::errc::operation_canceled),
                             call.what() + " was cancelled");
  e.kind = "cancelled";
  e.stop = StopReason::cancelled;
  return e;
}

Error connect_timeout_error(const Call& call, Duration connect_timeout) {
  Error e = Error::from_code(std::make_error_code(std::errc::timed_out),
                             call.what() + ": connecting to " + call.url_parts.host + ":" +
                                 call.url_parts.port + " timed out after " +
                                 describe_duration(connect_timeout));
  e.kind = "timeout";
  return e;
}

// What went wrong in the transport's own words: the errno's text, or that the peer closed.
std::string transport_reason(const boost::system::error_code& ec) {
  if (!to_std(ec) && is_closed_by_peer(ec)) return "the server closed the connection";
  return ec.message();
}

// Refused, reset, closed early: kind "connect" and the errno, connection_reset when the peer
// simply closed (EOF has no errno of its own).
Error transport_error(const Call& call, std::string_view stage,
                      const boost::system::error_code& ec) {
  std::error_code code = to_std(ec);
  if (!code) code = std::make_error_code(std::errc::connection_reset);
  Error e = Error::from_code(
      code, call.what() + " failed while " + std::string(stage) + ": " + transport_reason(ec));
  e.kind = "connect";
  return e;
}

// A step that failed: the error, and for a stream which step it was and why, in few words.
struct Failure {
  Error error;
  HttpStreamFailure step = HttpStreamFailure::none;
  std::string reason;
};

// Beast's parser found the bytes malformed (rather than the connection failing).
bool is_parse_error(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error{}).category();
}

// --- Streams ---

// One request_stream() call, besides its Call: what to call back and when to stop.
struct StreamPlan {
  HttpStreamHandlers handlers;
  HttpStreamLimits limits;
  SteadyTime end{};              // limits.deadline from the call's start
  std::uint64_t body_limit = 0;  // never boost::none: Beast 1.74 then refuses every Content-Length
};

// The outcome of one try of a stream on one connection. Default-constructible, as co_spawn
// requires.
struct StreamExchange {
  HttpStreamResult result;
  bool stale = false;     // a pooled connection failed before any byte of the response: retry
  bool reusable = false;  // the connection may go back to the pool
};

StreamExchange stream_ended(HttpStreamEnd end, bool reusable = false) {
  StreamExchange ex;
  ex.result.end = end;
  ex.reusable = reusable;
  return ex;
}

StreamExchange stream_failed(Failure failure) {
  StreamExchange ex;
  ex.result.end = HttpStreamEnd::failed;
  ex.result.failure = failure.step;
  ex.result.error = std::move(failure.error);
  ex.result.reason = std::move(failure.reason);
  return ex;
}

StreamExchange stream_stale() {
  StreamExchange ex;
  ex.stale = true;
  return ex;
}

}  // namespace

struct HttpClient::Impl {
  Impl(net::any_io_executor ex, HttpClientOptions opts)
      : executor(std::move(ex)), options(std::move(opts)) {}

  // Built on the first https call: loading the system's CA store takes tens of milliseconds,
  // which a client that only speaks http should not pay.
  void set_up_tls() {
    tls_context = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(tls_context->native_handle(), TLS1_2_VERSION);
    if (!options.verify_peer) return;
    boost::system::error_code ec;
    if (options.ca_file.empty()) {
      tls_context->set_default_verify_paths(ec);
      if (ec) {
        tls_setup_error = configuration_error("cannot load the system's default CA certificates: " +
                                              ec.message());
      }
    } else {
      tls_context->load_verify_file(options.ca_file, ec);
      if (ec) {
        tls_setup_error =
            configuration_error("cannot load ca_file \"" + options.ca_file + "\": " + ec.message());
      }
    }
  }

  static net::awaitable<Result<HttpResponse>> run(std::shared_ptr<Impl> self, std::string method,
                                                  std::string url, std::vector<HttpHeader> headers,
                                                  std::string body, std::optional<Duration> timeout,
                                                  std::shared_ptr<CallCancel> cancel = nullptr);

  Result<Call> prepare(std::string method, std::string url, std::vector<HttpHeader> headers,
                       std::string body, std::optional<Duration> timeout) const;
  net::awaitable<Exchange> exchange(std::shared_ptr<Connection> conn, const Call& call,
                                    bool pooled);
  net::awaitable<std::optional<Failure>> connect(Connection& conn, const Call& call);
  template <class Stream>
  net::awaitable<Exchange> send_and_receive(Connection& conn, Stream& stream, const Call& call,
                                            bool pooled);

  static net::awaitable<HttpStreamResult> run_stream(std::shared_ptr<Impl> self, std::string method,
                                                     std::string url,
                                                     std::vector<HttpHeader> headers,
                                                     std::string body, HttpStreamHandlers handlers,
                                                     HttpStreamLimits limits);
  net::awaitable<StreamExchange> stream_exchange(std::shared_ptr<Connection> conn, const Call& call,
                                                 const StreamPlan& plan, bool pooled);
  template <class Stream>
  net::awaitable<StreamExchange> send_and_stream(Connection& conn, Stream& stream, const Call& call,
                                                 const StreamPlan& plan, bool pooled);

  // The connection for an attempt: an idle one of the pool first; the retry after a stale
  // pooled connection always takes a fresh one.
  std::shared_ptr<Connection> connection_for(const Call& call, int attempt, bool* pooled) {
    std::shared_ptr<Connection> conn = attempt == 0 ? take_idle(call.pool_key) : nullptr;
    *pooled = conn != nullptr;
    if (!conn) {
      conn = std::make_shared<Connection>(net::make_strand(executor),
                                          call.tls ? tls_context.get() : nullptr);
    }
    return conn;
  }

  std::shared_ptr<Connection> take_idle(const std::string& key) {
    MutexLock lock(mu);
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    // The most recently used connection is the least likely to have been closed by the server.
    std::shared_ptr<Connection> conn = std::move(it->second.back());
    it->second.pop_back();
    --idle_count;
    return conn;
  }
  void put_idle(const std::string& key, std::shared_ptr<Connection> conn) {
    MutexLock lock(mu);
    auto& list = idle[key];
    // Over the limit, conn is closed as it goes out of scope (after the lock is released).
    if (list.size() >= options.max_idle_per_host) return;
    list.push_back(std::move(conn));
    ++idle_count;
  }
  // A pooled connection to this server was found closed: its siblings probably were too.
  void drop_idle(const std::string& key) {
    std::vector<std::shared_ptr<Connection>> dropped;
    MutexLock lock(mu);
    auto it = idle.find(key);
    if (it == idle.end()) return;
    idle_count -= it->second.size();
    dropped.swap(it->second);
    idle.erase(it);
  }

  net::any_io_executor executor;
  HttpClientOptions options;
  std::once_flag tls_once;
  std::unique_ptr<ssl::context> tls_context;  // set once, under tls_once
  std::optional<Error> tls_setup_error;       // set once, under tls_once; fails every https call

  mutable Mutex mu;
  std::map<std::string, std::vector<std::shared_ptr<Connection>>> idle MEND_GUARDED_BY(mu);
  std::size_t idle_count MEND_GUARDED_BY(mu) = 0;
};

Result<Call> HttpClient::Impl::prepare(std::string method, std::string url,
                                       std::vector<HttpHeader> headers, std::string body,
                                       std::optional<Duration> timeout) const {
  Result<UrlParts> parts = parse_url(url);
  if (!parts.ok()) return std::move(parts).error();
  if (!is_http_token(method)) {
    return configuration_error("invalid HTTP method \"" + printable(method) + "\"");
  }
  Call call;
  call.timeout = timeout.value_or(options.default_timeout);
  if (call.timeout <= Duration::zero()) {
    return configuration_error(method + " " + printable(url) + ": the timeout must be positive");
  }
  call.method = std::move(method);
  call.url = std::move(url);
  call.url_parts = std::move(*parts);
  call.tls = call.url_parts.scheme == "https";
  call.head = call.method == "HEAD";
  call.pool_key = call.url_parts.scheme + "://" + call.url_parts.host + ":" + call.url_parts.port;

  const UrlParts& u = call.url_parts;
  http::request<http::string_body>& req = call.request;
  req.method_string(call.method);
  req.target(u.target);
  req.version(11);
  std::string host = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  bool default_port =
      (u.scheme == "http" && u.port == "80") || (u.scheme == "https" && u.port == "443");
  if (!default_port) host += ":" + u.port;
  bool has_host = false;
  bool has_user_agent = false;
  for (HttpHeader& h : headers) {
    if (!is_http_token(h.name) || !is_valid_header_value(h.value)) {
      return configuration_error(call.what() + ": invalid header \"" + printable(h.name) +
                                 "\" (names are tokens; values have no CR, LF or NUL)");
    }
    // Framing is computed from the body; a caller's value could only contradict it.
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Transfer-Encoding")) continue;
    has_host = has_host || iequals(h.name, "Host");
    has_user_agent = has_user_agent || iequals(h.name, "User-Agent");
    req.insert(h.name, h.value);
  }
  if (!has_host) req.set(http::field::host, host);
  if (!has_user_agent && !options.user_agent.empty()) {
    req.set(http::field::user_agent, options.user_agent);
  }
  req.body() = std::move(body);
  req.prepare_payload();
  call.deadline = deadline_after(call.timeout);
  return call;
}

net::awaitable<Result<HttpResponse>> HttpClient::Impl::run(std::shared_ptr<Impl> self,
                                                           std::string method, std::string url,
                                                           std::vector<HttpHeader> headers,
                                                           std::string body,
                                                           std::optional<Duration> timeout,
                                                           std::shared_ptr<CallCancel> cancel) {
  Result<Call> prepared = self->prepare(std::move(method), std::move(url), std::move(headers),
                                        std::move(body), timeout);
  if (!prepared.ok()) co_return std::move(prepared).error();
  const Call& call = *prepared;
  if (call.tls) {
    std::call_once(self->tls_once, [&] { self->set_up_tls(); });
    if (self->tls_setup_error) co_return *self->tls_setup_error;
  }

  for (int attempt = 0;; ++attempt) {
    if (cancel != nullptr && cancel->cancelled()) co_return cancelled_error(call);
    bool pooled = false;
    std::shared_ptr<Connection> conn = self->connection_for(call, attempt, &pooled);
    // A cancel closes the connection on its strand: every operation on it then ends at once. The
    // connection is not kept alive by the hook (the exchange holds it while it runs).
    if (cancel != nullptr && !cancel->set_hook([weak = std::weak_ptr<Connection>(conn)] {
          if (std::shared_ptr<Connection> c = weak.lock()) {
            net::any_io_executor strand = c->executor;
            net::post(strand, [c = std::move(c)] {
              c->cancelled = true;
              boost::system::error_code ignored;
              c->tcp().socket().close(ignored);
            });
          }
        })) {
      if (pooled) self->put_idle(call.pool_key, std::move(conn));  // untouched: still good
      co_return cancelled_error(call);
    }
    // The exchange runs on the connection's strand, whatever executor the caller runs on, so the
    // stream's timers and operations never race.
    Exchange ex = co_await net::co_spawn(conn->executor, self->exchange(conn, call, pooled),
                                         net::use_awaitable);
    // Cancelled meanwhile: whatever the exchange says, the caller gave up on it, and its
    // connection may be closing; it is never pooled.
    if (cancel != nullptr && !cancel->clear_hook()) co_return cancelled_error(call);
    if (ex.stale) {
      self->drop_idle(call.pool_key);
      continue;
    }
    if (ex.reusable) self->put_idle(call.pool_key, std::move(conn));
    co_return std::move(*ex.result);
  }
}

net::awaitable<std::optional<Failure>> HttpClient::Impl::connect(Connection& conn,
                                                                 const Call& call) {
  const UrlParts& u = call.url_parts;
  SteadyTime connect_deadline = std::min(call.deadline, deadline_after(options.connect_timeout));
  auto timed_out = [&]() -> Failure {
    return {connect_deadline < call.deadline ? connect_timeout_error(call, options.connect_timeout)
                                             : timeout_error(call),
            HttpStreamFailure::connect_timeout, "timed out"};
  };
  boost::system::error_code ec;
  auto port = static_cast<unsigned short>(std::stoi(u.port));
  std::vector<tcp::endpoint> endpoints;
  net::ip::address address = net::ip::make_address(u.host, ec);
  if (!ec) {
    endpoints.emplace_back(address, port);
  } else {
    // The resolver has no deadline of its own: a timer cancels it.
    auto resolver = std::make_shared<tcp::resolver>(conn.executor);
    net::steady_timer timer(conn.executor);
    timer.expires_at(connect_deadline);
    timer.async_wait(
        [weak = std::weak_ptr<tcp::resolver>(resolver)](const boost::system::error_code& wait_ec) {
          if (wait_ec) return;
          if (auto r = weak.lock()) r->cancel();
        });
    ec = {};
    auto results = co_await resolver->async_resolve(u.host, u.port,
                                                    net::redirect_error(net::use_awaitable, ec));
    timer.cancel();
    if (ec == net::error::operation_aborted) co_return timed_out();
    if (ec) {
      Error e = Error::of_kind("connect", call.what() + " failed: cannot resolve host \"" + u.host +
                                              "\": " + ec.message());
      e.code = to_std(ec);
      co_return Failure{std::move(e), HttpStreamFailure::resolve, ec.message()};
    }
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }
  if (conn.cancelled) {
    co_return Failure{transport_error(call, "connecting", net::error::operation_aborted),
                      HttpStreamFailure::connect, "cancelled"};
  }

  beast::tcp_stream& tcp = conn.tcp();
  tcp.expires_at(connect_deadline);
  ec = {};
  co_await tcp.async_connect(endpoints, net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) co_return timed_out();
  if (ec) {
    co_return Failure{transport_error(call, "connecting to " + u.host + ":" + u.port, ec),
                      HttpStreamFailure::connect, transport_reason(ec)};
  }
  tcp.socket().set_option(tcp::no_delay(true), ec);

  if (!conn.tls) co_return std::nullopt;
  SSL* native = conn.tls->native_handle();
  bool ip = is_ip_literal(u.host);
  // SNI carries host names only (RFC 6066).
  if (!ip) SSL_set_tlsext_host_name(native, u.host.c_str());
  if (options.verify_peer) {
    // OpenSSL's own host check (what ssl::host_name_verification calls) rather than a verify
    // callback: on a mismatch the verify result then says so, and the error can tell why.
    X509_VERIFY_PARAM* param = SSL_get0_param(native);
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, u.host.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, u.host.c_str(), u.host.size());
    }
    conn.tls->set_verify_mode(ssl::verify_peer);
  } else {
    conn.tls->set_verify_mode(ssl::verify_none);
  }
  ec = {};
  co_await conn.tls->async_handshake(ssl::stream_base::client,
                                     net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) co_return timed_out();
  if (ec) {
    long verify = SSL_get_verify_result(native);
    if (ec.category() != net::error::get_ssl_category() && verify == X509_V_OK) {
      co_return Failure{
          transport_error(call, "in the TLS handshake with " + u.host + ":" + u.port, ec),
          HttpStreamFailure::connect, transport_reason(ec)};
    }
    std::string why = verify != X509_V_OK ? std::string("certificate verification failed: ") +
                                                X509_verify_cert_error_string(verify)
                                          : ec.message();
    Error e = Error::of_kind("tls", call.what() + " failed: TLS handshake with " + u.host + ":" +
                                        u.port + " failed: " + why);
    co_return Failure{std::move(e), HttpStreamFailure::tls, why};
  }
  co_return std::nullopt;
}

net::awaitable<Exchange> HttpClient::Impl::exchange(std::shared_ptr<Connection> conn,
                                                    const Call& call, bool pooled) {
  if (std::chrono::steady_clock::now() >= call.deadline) {
    co_return Exchange{timeout_error(call), false, pooled};
  }
  if (!pooled) {
    std::optional<Failure> failed = co_await connect(*conn, call);
    if (failed) co_return Exchange{std::move(failed->error), false, false};
  }
  // Cancelled while it connected (to another of the host's addresses, say): not sent.
  if (conn->cancelled) {
    co_return Exchange{transport_error(call, "connecting", net::error::operation_aborted), false,
                       false};
  }
  if (conn->tls) co_return co_await send_and_receive(*conn, *conn->tls, call, pooled);
  co_return co_await send_and_receive(*conn, *conn->plain, call, pooled);
}

template <class Stream>
net::awaitable<Exchange> HttpClient::Impl::send_and_receive(Connection& conn, Stream& stream,
                                                            const Call& call, bool pooled) {
  beast::tcp_stream& tcp = conn.tcp();
  boost::system::error_code ec;
  tcp.expires_at(call.deadline);
  co_await http::async_write(stream, call.request, net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) co_return Exchange{timeout_error(call), false, false};
  if (ec) {
    if (pooled && is_closed_by_peer(ec)) co_return Exchange{std::nullopt, true, false};
    co_return Exchange{transport_error(call, "sending the request", ec), false, false};
  }

  http::response_parser<http::string_body> parser;
  parser.body_limit(options.max_response_bytes);
  parser.header_limit(kMaxResponseHeaderBytes);
  if (call.head) parser.skip(true);
  bool nothing_buffered = conn.buffer.size() == 0;
  tcp.expires_at(call.deadline);
  ec = {};
  // The header first, then the rest: Beast 1.74's eager response parser loses the body_limit
  // error when the header and the start of the body arrive in one read.
  co_await http::async_read_header(stream, conn.buffer, parser,
                                   net::redirect_error(net::use_awaitable, ec));
  if (!ec) {
    co_await http::async_read(stream, conn.buffer, parser,
                              net::redirect_error(net::use_awaitable, ec));
  }
  if (ec == beast::error::timeout) co_return Exchange{timeout_error(call), false, false};
  if (ec == http::error::body_limit) {
    co_return Exchange{Error::of_kind("response_too_large",
                                      call.what() + ": the response body exceeds the limit of " +
                                          std::to_string(options.max_response_bytes) + " bytes"),
                       false, false};
  }
  if (ec) {
    if (pooled && nothing_buffered && !parser.got_some() && is_closed_by_peer(ec)) {
      co_return Exchange{std::nullopt, true, false};
    }
    if (is_closed_by_peer(ec) || !is_parse_error(ec)) {
      co_return Exchange{transport_error(call, "reading the response", ec), false, false};
    }
    co_return Exchange{
        Error::of_kind("protocol", call.what() + ": malformed response: " + ec.message()), false,
        false};
  }

  http::response<http::string_body> res = parser.release();
  HttpResponse response;
  response.status = static_cast<int>(res.result_int());
  response.headers.reserve(static_cast<std::size_t>(std::distance(res.begin(), res.end())));
  for (const auto& field : res) {
    response.headers.push_back({std::string(field.name_string()), std::string(field.value())});
  }
  response.body = std::move(res.body());
  bool reusable = res.keep_alive() && !res.need_eof();
  co_return Exchange{std::move(response), false, reusable};
}

// --- request_stream() ---------------------------------------------------------------------------

net::awaitable<HttpStreamResult> HttpClient::Impl::run_stream(std::shared_ptr<Impl> self,
                                                              std::string method, std::string url,
                                                              std::vector<HttpHeader> headers,
                                                              std::string body,
                                                              HttpStreamHandlers handlers,
                                                              HttpStreamLimits limits) {
  auto invalid = [](Error e) {
    return stream_failed({std::move(e), HttpStreamFailure::invalid_request, "invalid request"})
        .result;
  };
  // Connecting, sending and the head have the head timeout, and the deadline when it is nearer.
  const Duration head_timeout = limits.head_timeout.value_or(self->options.default_timeout);
  Result<Call> prepared = self->prepare(std::move(method), std::move(url), std::move(headers),
                                        std::move(body), std::min(head_timeout, limits.deadline));
  if (!prepared.ok()) co_return invalid(std::move(prepared).error());
  const Call& call = *prepared;
  if (limits.silence_timeout <= Duration::zero()) {
    co_return invalid(configuration_error(call.what() + ": the silence timeout must be positive"));
  }
  if (limits.max_header_bytes == 0 || limits.max_piece_bytes == 0) {
    co_return invalid(configuration_error(
        call.what() + ": max_header_bytes and max_piece_bytes must be at least 1"));
  }
  StreamPlan plan;
  plan.end = deadline_after(limits.deadline);
  plan.body_limit = limits.max_body_bytes.value_or(self->options.max_response_bytes);
  plan.handlers = std::move(handlers);
  plan.limits = std::move(limits);
  if (call.tls) {
    std::call_once(self->tls_once, [&] { self->set_up_tls(); });
    if (self->tls_setup_error) co_return invalid(*self->tls_setup_error);
  }

  for (int attempt = 0;; ++attempt) {
    bool pooled = false;
    std::shared_ptr<Connection> conn = self->connection_for(call, attempt, &pooled);
    // On the connection's strand, handlers included; an exception a handler throws comes out
    // of this co_await.
    StreamExchange ex = co_await net::co_spawn(
        conn->executor, self->stream_exchange(conn, call, plan, pooled), net::use_awaitable);
    if (ex.stale) {
      self->drop_idle(call.pool_key);
      continue;
    }
    if (ex.reusable) self->put_idle(call.pool_key, std::move(conn));
    co_return std::move(ex.result);
  }
}

net::awaitable<StreamExchange> HttpClient::Impl::stream_exchange(std::shared_ptr<Connection> conn,
                                                                 const Call& call,
                                                                 const StreamPlan& plan,
                                                                 bool pooled) {
  if (std::chrono::steady_clock::now() >= call.deadline) {
    co_return stream_failed({timeout_error(call), HttpStreamFailure::head_timeout, "timed out"});
  }
  if (!pooled) {
    std::optional<Failure> failed = co_await connect(*conn, call);
    if (failed) co_return stream_failed(std::move(*failed));
  }
  if (conn->tls) co_return co_await send_and_stream(*conn, *conn->tls, call, plan, pooled);
  co_return co_await send_and_stream(*conn, *conn->plain, call, plan, pooled);
}

template <class Stream>
net::awaitable<StreamExchange> HttpClient::Impl::send_and_stream(Connection& conn, Stream& stream,
                                                                 const Call& call,
                                                                 const StreamPlan& plan,
                                                                 bool pooled) {
  using F = HttpStreamFailure;
  beast::tcp_stream& tcp = conn.tcp();
  boost::system::error_code ec;
  tcp.expires_at(call.deadline);
  co_await http::async_write(stream, call.request, net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) {
    co_return stream_failed({timeout_error(call), F::send_timeout, "timed out"});
  }
  if (ec) {
    if (pooled && is_closed_by_peer(ec)) co_return stream_stale();
    co_return stream_failed(
        {transport_error(call, "sending the request", ec), F::send, transport_reason(ec)});
  }

  // The head, whole; then the body into a buffer of our own, one piece per read.
  http::response_parser<http::buffer_body> parser;
  parser.header_limit(plan.limits.max_header_bytes);
  parser.body_limit(plan.body_limit);
  if (call.head) parser.skip(true);
  const bool nothing_buffered = conn.buffer.size() == 0;
  tcp.expires_at(call.deadline);
  co_await http::async_read_header(stream, conn.buffer, parser,
                                   net::redirect_error(net::use_awaitable, ec));
  const std::string body_too_large = call.what() + ": the response body exceeds the limit of " +
                                     std::to_string(plan.body_limit) + " bytes";
  if (ec == beast::error::timeout) {
    co_return stream_failed({timeout_error(call), F::head_timeout, "timed out"});
  }
  if (ec) {
    if (pooled && nothing_buffered && !parser.got_some() && is_closed_by_peer(ec)) {
      co_return stream_stale();
    }
    if (ec == http::error::header_limit) {
      std::string why = "the response's headers exceed the limit of " +
                        std::to_string(plan.limits.max_header_bytes) + " bytes";
      co_return stream_failed(
          {Error::of_kind("response_too_large", call.what() + ": " + why), F::head_too_large, why});
    }
    if (ec == http::error::body_limit) {  // a Content-Length over the limit
      co_return stream_failed({Error::of_kind("response_too_large", body_too_large),
                               F::body_too_large, "the response body exceeds the limit"});
    }
    if (is_closed_by_peer(ec) && !to_std(ec)) {
      co_return stream_failed({transport_error(call, "reading the response", ec),
                               F::closed_before_head, transport_reason(ec)});
    }
    if (is_parse_error(ec)) {
      co_return stream_failed(
          {Error::of_kind("protocol", call.what() + ": malformed response: " + ec.message()),
           F::malformed_head, ec.message()});
    }
    co_return stream_failed(
        {transport_error(call, "reading the response", ec), F::read, transport_reason(ec)});
  }

  {
    HttpResponse head;
    head.status = static_cast<int>(parser.get().result_int());
    for (const auto& field : parser.get()) {
      head.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    if (plan.handlers.on_head && !plan.handlers.on_head(head)) {
      co_return stream_ended(HttpStreamEnd::stopped);
    }
  }

  const std::size_t piece_size = plan.limits.max_piece_bytes;
  std::unique_ptr<char[]> piece(new char[piece_size]);
  SteadyTime last_byte = std::chrono::steady_clock::now();
  for (;;) {
    if (parser.is_done()) {
      co_return stream_ended(HttpStreamEnd::complete,
                             parser.get().keep_alive() && !parser.need_eof());
    }
    if (std::chrono::steady_clock::now() >= plan.end) {
      co_return stream_ended(HttpStreamEnd::deadline);
    }
    const Duration silence = plan.limits.silence_timeout;
    const SteadyTime silent_at =
        silence >= SteadyTime::max() - last_byte ? SteadyTime::max() : last_byte + silence;
    const bool deadline_first = plan.end <= silent_at;
    tcp.expires_at(deadline_first ? plan.end : silent_at);
    parser.get().body().data = piece.get();
    parser.get().body().size = piece_size;
    co_await http::async_read_some(stream, conn.buffer, parser,
                                   net::redirect_error(net::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};  // the piece is full: the rest comes next time
    const std::size_t got = piece_size - parser.get().body().size;
    if (got > 0 && plan.handlers.on_body &&
        !plan.handlers.on_body(std::string_view(piece.get(), got))) {
      co_return stream_ended(HttpStreamEnd::stopped);
    }
    if (ec == beast::error::timeout) {
      if (deadline_first) co_return stream_ended(HttpStreamEnd::deadline);
      Error e = Error::from_code(
          std::make_error_code(std::errc::timed_out),
          call.what() + ": the response went silent: no data for " + describe_duration(silence));
      e.kind = "timeout";
      co_return stream_failed(
          {std::move(e), F::silence, "no data for " + describe_duration(silence)});
    }
    if (ec == http::error::partial_message || ec == net::ssl::error::stream_truncated) {
      // The peer closed where the framing says the body goes on: a server that died, a network
      // that failed, or a proxy that gave up; not the end of the body.
      const std::string why = "the server closed the connection before the end of the body";
      Error e = Error::from_code(std::make_error_code(std::errc::connection_reset),
                                 call.what() + " failed while reading the response: " + why);
      e.kind = "connect";
      co_return stream_failed({std::move(e), F::cut_off, why});
    }
    if (ec == http::error::body_limit) {
      co_return stream_failed({Error::of_kind("response_too_large", body_too_large),
                               F::body_too_large, "the response body exceeds the limit"});
    }
    if (ec && is_parse_error(ec)) {
      co_return stream_failed(
          {Error::of_kind("protocol", call.what() + ": malformed response body: " + ec.message()),
           F::malformed_body, ec.message()});
    }
    if (ec) {
      co_return stream_failed(
          {transport_error(call, "reading the response", ec), F::read, transport_reason(ec)});
    }
    last_byte = std::chrono::steady_clock::now();
  }
}

HttpClient::HttpClient(boost::asio::any_io_executor executor, HttpClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {}

HttpClient::~HttpClient() = default;

boost::asio::awaitable<Result<HttpResponse>> HttpClient::request(
    std::string method, std::string url, std::vector<HttpHeader> headers, std::string body,
    std::optional<Duration> timeout, std::shared_ptr<CallCancel> cancel) {
  // Not a coroutine itself: the call holds the shared state, not `this`.
  return Impl::run(impl_, std::move(method), std::move(url), std::move(headers), std::move(body),
                   timeout, std::move(cancel));
}

Result<HttpResponse> HttpClient::request_sync(std::string method, std::string url,
                                              std::vector<HttpHeader> headers, std::string body,
                                              std::optional<Duration> timeout) {
  auto promise = std::make_shared<std::promise<Result<HttpResponse>>>();
  std::future<Result<HttpResponse>> future = promise->get_future();
  net::co_spawn(
      impl_->executor,
      [impl = impl_, promise, method = std::move(method), url = std::move(url),
       headers = std::move(headers), body = std::move(body),
       timeout]() mutable -> net::awaitable<void> {
        std::optional<Result<HttpResponse>> result;
        try {
          result.emplace(co_await Impl::run(impl, std::move(method), std::move(url),
                                            std::move(headers), std::move(body), timeout));
        } catch (const std::exception& e) {
          result.emplace(Error::from_live_exception(e, std::current_exception()));
        }
        promise->set_value(std::move(*result));
      },
      net::detached);
  return future.get();
}

boost::asio::awaitable<HttpStreamResult> HttpClient::request_stream(
    std::string method, std::string url, std::vector<HttpHeader> headers, std::string body,
    HttpStreamHandlers handlers, HttpStreamLimits limits) {
  // Not a coroutine itself: the call holds the shared state, not `this`.
  return Impl::run_stream(impl_, std::move(method), std::move(url), std::move(headers),
                          std::move(body), std::move(handlers), std::move(limits));
}

HttpStreamResult HttpClient::request_stream_sync(std::string method, std::string url,
                                                 std::vector<HttpHeader> headers, std::string body,
                                                 HttpStreamHandlers handlers,
                                                 HttpStreamLimits limits) {
  auto promise = std::make_shared<std::promise<HttpStreamResult>>();
  std::future<HttpStreamResult> future = promise->get_future();
  net::co_spawn(
      impl_->executor,
      [impl = impl_, promise, method = std::move(method), url = std::move(url),
       headers = std::move(headers), body = std::move(body), handlers = std::move(handlers),
       limits = std::move(limits)]() mutable -> net::awaitable<void> {
        std::exception_ptr thrown;
        try {
          promise->set_value(co_await Impl::run_stream(impl, std::move(method), std::move(url),
                                                       std::move(headers), std::move(body),
                                                       std::move(handlers), std::move(limits)));
        } catch (...) {
          thrown = std::current_exception();  // a handler's, most likely: the caller's to see
        }
        if (thrown) promise->set_exception(thrown);
      },
      net::detached);
  return future.get();
}

std::size_t HttpClient::idle_connections() const {
  MutexLock lock(impl_->mu);
  return impl_->idle_count;
}

void HttpClient::close_idle_connections() {
  std::map<std::string, std::vector<std::shared_ptr<Connection>>> dropped;
  MutexLock lock(impl_->mu);
  dropped.swap(impl_->idle);
  impl_->idle_count = 0;
}

const HttpClientOptions& HttpClient::options() const noexcept {
  return impl_->options;
}

}  // namespace mend
