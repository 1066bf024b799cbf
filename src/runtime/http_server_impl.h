// Internal to mend::runtime: what the HTTP server's files (mend/runtime/http_server.h) share: a
// connection (Session), one asynchronous exchange between a connection and its handler's
// responder (Exchange), and HttpServer::Impl. http_server.cc serves connections (the only one
// with Beast), http_server_responder.cc is the responder, http_server_lifecycle.cc starts and
// stops the server. No Beast here: it is slow to compile and stays in http_server.cc.
#ifndef MEND_SRC_RUNTIME_HTTP_SERVER_IMPL_H_
#define MEND_SRC_RUNTIME_HTTP_SERVER_IMPL_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mend/core/thread_annotations.h"
#include "mend/runtime/http.h"
#include "mend/runtime/http_server.h"

namespace mend::runtime_detail {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// An answer the server gives by itself: `status` and the JSON body
// {"error":{"type":...,"message":...}}.
HttpResponse json_error(int status, std::string_view type, std::string_view message);

struct Exchange;

// Whether a new connection fits the server's limits; one over either is answered 503 from its
// request's header (reserved paths aside) and closed.
enum class Capacity : std::uint8_t { within, over_total, over_client };

// One connection; its Beast stream is in PlainSession or TlsSession (http_server.cc).
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
  // The one in progress. Guarded by HttpServer::Impl::mu (not annotated: a Session does not know
  // its server).
  std::shared_ptr<Exchange> exchange;
  std::string client;  // the peer's address, set before the session is registered
};

// One asynchronous request/answer exchange, shared by the session that serves it and the
// HttpResponder the handler holds. Holds no I/O object: the responder may outlive the server.
struct Exchange : std::enable_shared_from_this<Exchange> {
  enum class Phase { kPending, kAnswered, kStreaming, kAborted, kDropped };

  Exchange(net::any_io_executor session_strand, std::string method_and_target)
      : target(std::move(method_and_target)), strand(std::move(session_strand)) {}

  // Asks the session to look at the state again. Called with mu held. Posts nothing once the
  // exchange is closed: then the strand may belong to an io_context that is gone.
  void wake_locked() MEND_REQUIRES(mu) {
    if (closed || wake_posted || !strand) return;
    wake_posted = true;
    net::post(strand, [self = shared_from_this()] {
      bool hopeless = false;
      {
        MutexLock lock(self->mu);
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
    MutexLock lock(mu);
    closed = true;
    strand = {};
  }

  const std::string target;

  Mutex mu;
  Phase phase MEND_GUARDED_BY(mu) = Phase::kPending;
  // Set with kAnswered, taken by the session.
  std::optional<HttpResponse> answer MEND_GUARDED_BY(mu);
  int stream_status MEND_GUARDED_BY(mu) = 0;  // set with kStreaming
  std::vector<HttpHeader> stream_headers MEND_GUARDED_BY(mu);
  std::string queued MEND_GUARDED_BY(mu);      // stream bytes not taken by the session yet
  std::size_t unsent MEND_GUARDED_BY(mu) = 0;  // queued + being written
  bool end_requested MEND_GUARDED_BY(mu) = false;
  bool overflowed MEND_GUARDED_BY(mu) = false;  // the client could not keep up
  bool closed MEND_GUARDED_BY(mu) = false;
  bool wake_posted MEND_GUARDED_BY(mu) = false;
  net::any_io_executor strand MEND_GUARDED_BY(mu);  // empty once closed
  Session* session = nullptr;                       // set while the session serves it; strand only
};

// The HttpResponder handed to the asynchronous handler for `exchange` (http_server_responder.cc).
std::shared_ptr<HttpResponder> make_responder(std::shared_ptr<Exchange> exchange);

}  // namespace mend::runtime_detail

namespace mend {

struct HttpServer::Impl {
  using Capacity = runtime_detail::Capacity;
  using Session = runtime_detail::Session;

  Impl(HttpServerOptions opts, Handler h) : options(std::move(opts)), handler(std::move(h)) {}
  Impl(HttpServerOptions opts, AsyncHandler h)
      : options(std::move(opts)), async_handler(std::move(h)) {}

  // Serving connections, in http_server.cc (HttpServer's own members, start() and stop(), are in
  // http_server_lifecycle.cc). Where Beast's types would appear, the members are templates
  // (Request: a request, Response: a response, as Beast has them), so that this header needs no
  // Beast.
  boost::asio::awaitable<void> accept_loop();
  template <class S>
  boost::asio::awaitable<void> run_session(std::shared_ptr<S> session, Capacity capacity);
  template <class S>
  boost::asio::awaitable<void> serve_requests(std::shared_ptr<S> session, Capacity capacity);
  // Hands the request to the asynchronous handler and carries out what its responder asks.
  // Returns whether the connection goes on to its next request.
  template <class S>
  boost::asio::awaitable<bool> exchange(std::shared_ptr<S> session, unsigned version,
                                        bool keep_alive, bool head, HttpRequest request);
  template <class S>
  void watch(const std::shared_ptr<S>& session);
  template <class S>
  boost::asio::awaitable<void> stop_watching(const std::shared_ptr<S>& session);
  template <class Stream, class Response>
  boost::asio::awaitable<bool> write(Stream& stream, Response& response);
  template <class Stream>
  boost::asio::awaitable<void> answer_and_close(Stream& stream, unsigned version,
                                                HttpResponse response);
  // What a request's header alone decides (framing the server does not take, too many
  // connections, the options' screen): an answer to send before its body, and close.
  template <class Request>
  std::optional<HttpResponse> screen_header(const Request& req, Capacity capacity) const;
  // A GET or HEAD of one of options.reserved_paths (the query aside).
  template <class Request>
  bool reserved(const Request& req) const;
  HttpResponse call_handler(const HttpRequest& request);

  void unregister(const std::shared_ptr<Session>& session) {
    MutexLock lock(mu);
    if (sessions.erase(session) > 0) {
      auto client = per_client.find(session->client);
      if (client != per_client.end() && --client->second == 0) per_client.erase(client);
    }
    cv.notify_all();
  }

  const HttpServerOptions options;
  const Handler handler;  // one of these two is set
  const AsyncHandler async_handler;

  Mutex mu;
  std::condition_variable cv;
  std::set<std::shared_ptr<Session>> sessions MEND_GUARDED_BY(mu);
  std::map<std::string, std::size_t, std::less<>> per_client MEND_GUARDED_BY(mu);  // by address
  bool accepting MEND_GUARDED_BY(mu) = false;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> served{0};
  std::atomic<std::size_t> accepted{0};

  Mutex lifecycle_mu;  // start() and stop()
  bool started MEND_GUARDED_BY(lifecycle_mu) = false;
  bool stopped MEND_GUARDED_BY(lifecycle_mu) = false;
  std::atomic<unsigned short> port{0};
  mutable Mutex url_mu;  // not lifecycle_mu: a handler may ask while stop() waits for it
  std::string base_url MEND_GUARDED_BY(url_mu);

  // Declared after the state above: handlers still pending when the context is destroyed touch
  // it from their destructors.
  std::unique_ptr<boost::asio::ssl::context> tls;
  std::vector<std::thread> threads;
  std::unique_ptr<boost::asio::io_context> io;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;  // runs on its own strand
};

}  // namespace mend

#endif  // MEND_SRC_RUNTIME_HTTP_SERVER_IMPL_H_
