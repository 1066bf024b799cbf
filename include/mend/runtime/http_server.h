// File: mend/runtime/http_server.h
//
// A small HTTP/1.1 server: keep-alive, bounded request sizes and read times, optional TLS, and a
// synchronous handler. What the daemon's API and the tests' fake agents are built on.
//
//   mend::HttpServer server({}, [](const mend::HttpRequest& request) {
//     if (request.target != "/health") return mend::HttpResponse{404, {}, "not found"};
//     return mend::HttpResponse{200, {}, R"({"status":"healthy"})"};
//   });
//   if (auto started = server.start(); !started.ok()) fail(started.error().message);
//   client.request_sync("GET", server.base_url() + "/health");   // "http://127.0.0.1:PORT"
//   server.stop();                                               // or let the destructor do it
//
// What the server answers by itself, each with Connection: close and a JSON body
// {"error":{"type":...,"message":...}} whose type is one of mend's error type names:
//   400 a malformed request (then closes), 413 a body over max_body_bytes, 431 headers over
//   32 KiB, 500 when the handler throws or returns a response that cannot be sent (bad status or
//   header), 503 for connections over max_connections or max_connections_per_client. A
//   connection that sends nothing, or not a whole request, within read_timeout is closed without
//   a word.
// Garbage bytes never crash it: the connection that sent them is answered 400 or closed.
//
// Answers that take time (a task the client waits for) and streams (server-sent events) use the
// asynchronous handler instead: it is handed an HttpResponder and returns at once; whoever holds
// the responder answers later, from any thread, or streams the body piece by piece:
//
//   mend::HttpServer server({}, [](mend::HttpRequest request,
//                                  std::shared_ptr<mend::HttpResponder> responder) {
//     if (request.target == "/events") {
//       responder->start_stream(200, {{"Content-Type", "text/event-stream"}});
//       hub.subscribe(responder);          // later: responder->send("data: ...\n\n")
//       return;
//     }
//     pool.post([responder] { responder->respond({200, {}, "{}"}); });
//   });
//
// A responder dropped without an answer makes the server answer 500 (an unfinished stream is
// ended instead). While a connection waits for its answer or streams, its read timeout does not
// run (the responder's holder bounds the wait) and the server watches it only to notice the
// client leaving: closed() then turns true and the responder's calls do nothing. Bytes the
// client sends meanwhile (a pipelined next request) are kept for after the answer.
//
// Thread-safety: start(), stop() and the accessors may be called from any thread. The handler
// is called on the server's threads, for several connections at once when threads > 1: it must
// be thread-safe. HttpResponder's members may be called from any thread. stop() waits for the
// synchronous handler calls in progress and closes every connection, pending and streaming ones
// included (their responders' calls then do nothing and send() returns false); it must not be
// called from a handler.
#ifndef MEND_RUNTIME_HTTP_SERVER_H_
#define MEND_RUNTIME_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/result.h"
#include "mend/runtime/http.h"

namespace mend {

struct HttpServerOptions {
  // An IPv4 or IPv6 address ("::1", "0.0.0.0"); not a host name. Default "127.0.0.1": loopback.
  std::string bind_address = "127.0.0.1";
  // 0 (the default): a free port, chosen by the system; port() says which.
  unsigned short port = 0;
  // A larger request body is answered 413. Default 1 MiB.
  std::size_t max_body_bytes = std::size_t{1} << 20;
  // Time allowed for each request to arrive (and each response to be taken), and for an idle
  // keep-alive connection to send its next request. Default 10 s.
  Duration read_timeout = std::chrono::seconds(10);
  // Connections over this number are answered 503 from their request's header (no body is read)
  // and closed, but for a GET or HEAD of a reserved path. Default 256.
  std::size_t max_connections = 256;
  // Connections from one client address (IPv4, or IPv6) over this number are refused the same
  // way, so that one client cannot take every connection. 0 (the default here): no such limit.
  // Behind a proxy every client has the proxy's address: raise it or set 0 there.
  std::size_t max_connections_per_client = 0;
  // Paths answered even over max_connections (then on a connection closed after the answer):
  // health checks, so that a liveness probe does not restart a server that is merely busy.
  std::vector<std::string> reserved_paths;
  // Threads that run the server and call the handler. Default 1.
  std::size_t threads = 1;
  // PEM certificate chain (leaf first) and private key. Both set: the server speaks HTTPS only.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // Called with a request's method, target and headers (no body yet) before its body is read: an
  // answer it returns is sent instead of reading the body, and the connection is closed. What a
  // client may not do (an unauthenticated POST) then costs no body. Called on the server's
  // threads, possibly many at once. Empty: every request is read whole.
  std::function<std::optional<HttpResponse>(const HttpRequest& head)> screen;
};

// The other end of one request, for the asynchronous handler. Exactly one of respond() or
// start_stream() takes effect; later calls of either do nothing. Calls after the exchange is
// over (closed()) do nothing either, whatever the reason: answer sent, client gone, server
// stopped or destroyed. A responder may outlive its server.
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  // Sends the whole answer (keep-alive as the request asked), as a synchronous handler's answer
  // is sent: HEAD gets the headers only, an unsendable answer (bad status or header) becomes 500.
  virtual void respond(HttpResponse response) = 0;
  // Sends status and headers now and the body as it comes: chunked for HTTP/1.1 (to HTTP/1.0 the
  // body runs to the close), Connection: close, framing headers given are dropped. A HEAD
  // request gets the header only and the stream is over. Returns false when the connection is
  // gone already or an answer was given; an invalid status (1xx, 204, 304) or header also
  // returns false, and the client is answered 500.
  virtual bool start_stream(int status, std::vector<HttpHeader> headers) = 0;
  // Queues a piece of a streamed body; pieces go out in order, as soon as the client takes them.
  // Returns false once the client has gone, the server stops, the stream was ended, or more than
  // 1 MiB would wait unsent (a client too slow to follow: its connection is reset).
  virtual bool send(std::string piece) = 0;
  // Ends a streamed body once the queued pieces are sent, then closes the connection.
  virtual void end_stream() = 0;
  // Closes the connection with a reset and without an answer (or, in a stream, without its end),
  // as a crashing server would. For chaos testing; does nothing after respond().
  virtual void abort() = 0;
  // True once the exchange is over: answer or stream end written, aborted, client gone, server
  // stopped.
  virtual bool closed() const = 0;
  // The request method and target ("POST /task"), for logs.
  virtual const std::string& target() const = 0;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using AsyncHandler = std::function<void(HttpRequest, std::shared_ptr<HttpResponder>)>;

  HttpServer(HttpServerOptions options, Handler handler);
  HttpServer(HttpServerOptions options, AsyncHandler handler);
  ~HttpServer();  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens, then serves on options.threads threads. Errors (kind "configuration"):
  // the address is not an IP address, the port is taken, the certificate or key is unusable, or
  // the server was started already.
  Result<void> start();
  // Closes the listener and every connection, waits for handler calls in progress, joins the
  // threads. Idempotent. A stopped server cannot be started again.
  void stop();

  unsigned short port() const;   // the bound port; 0 before start()
  std::string base_url() const;  // "http://127.0.0.1:PORT", "https://[::1]:PORT"; "" before start()
  std::size_t requests_served() const;       // requests answered, error answers included
  std::size_t connections_accepted() const;  // TCP connections accepted since start()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mend

#endif  // MEND_RUNTIME_HTTP_SERVER_H_
