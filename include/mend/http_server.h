// File: mend/http_server.h
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
//   header), 503 for connections over max_connections. A connection that sends nothing, or not a
//   whole request, within read_timeout is closed without a word.
// Garbage bytes never crash it: the connection that sent them is answered 400 or closed.
//
// Thread-safety: start(), stop() and the accessors may be called from any thread. The handler
// is called on the server's threads, for several connections at once when threads > 1: it must
// be thread-safe. stop() waits for the handler calls in progress; it must not be called from the
// handler.
#ifndef MEND_HTTP_SERVER_H_
#define MEND_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "mend/clock.h"
#include "mend/http.h"
#include "mend/result.h"

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
  // Connections over this number are answered 503. Default 256.
  std::size_t max_connections = 256;
  // Threads that run the server and call the handler. Default 1.
  std::size_t threads = 1;
  // PEM certificate chain (leaf first) and private key. Both set: the server speaks HTTPS only.
  std::string tls_cert_pem;
  std::string tls_key_pem;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer(HttpServerOptions options, Handler handler);
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

#endif  // MEND_HTTP_SERVER_H_
