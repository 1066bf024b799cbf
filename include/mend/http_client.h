// File: mend/http_client.h
//
// The HTTP/1.1 client mend uses to reach agents: Asio coroutines, keep-alive connections pooled
// per scheme://host:port, HTTPS with peer verification, and one deadline per call.
//
//   boost::asio::io_context io;                       // run by one or more threads
//   mend::HttpClient client(io.get_executor());
//   // In a coroutine on any executor:
//   mend::Result<mend::HttpResponse> r = co_await client.request(
//       "POST", "http://127.0.0.1:8080/task", {{"Content-Type", "application/json"}}, body,
//       std::chrono::seconds(2));
//   if (!r.ok()) classifier.classify_in_place(r.error());  // network_timeout, connection_reset...
//   else if (r->status == 503) ...                         // an answer, not a transport error
//
// Errors are mend::Error values shaped for Classifier::standard(), and left unclassified:
//   - the call's deadline passed: code std::errc::timed_out, kind "timeout";
//   - the connection was refused, reset or closed mid-response: code connection_refused or
//     connection_reset (the errno, when there is one), kind "connect";
//   - the TLS handshake failed or the certificate was not trusted: kind "tls", the message says
//     why verification failed;
//   - a malformed response: kind "protocol"; a response larger than max_response_bytes: kind
//     "response_too_large";
//   - a bad URL, method or header, or an unreadable ca_file: kind "configuration".
// An HTTP error status is not an error at this layer: a 503 is a successful HttpResponse.
//
// A pooled connection that the server closed meanwhile is detected when the request fails before
// any byte of the response arrives; the request is then sent once more on a fresh connection.
//
// Thread-safety: all methods may be called concurrently from any thread; the pool is shared and
// locked. Calls in flight keep the client's state alive, so the client may be destroyed before
// they finish; the executor must outlive them. request_sync() must not be called from a thread
// that runs the client's executor (it would wait for itself).
#ifndef MEND_HTTP_CLIENT_H_
#define MEND_HTTP_CLIENT_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/clock.h"
#include "mend/http.h"
#include "mend/result.h"

namespace mend {

struct HttpClientOptions {
  // Time allowed to resolve, connect and finish the TLS handshake of a new connection (within
  // the call's own deadline). Default 5 s.
  Duration connect_timeout = std::chrono::seconds(5);
  // The whole call, connection included, when the call gives no timeout of its own. Default 30 s.
  Duration default_timeout = std::chrono::seconds(30);
  // Idle keep-alive connections kept per scheme://host:port; more are closed. Default 8.
  std::size_t max_idle_per_host = 8;
  // A larger response body is an error (kind "response_too_large"). Default 8 MiB.
  std::size_t max_response_bytes = std::size_t{8} << 20;
  // Sent unless the call gives its own User-Agent header. Default "mend/0.1".
  std::string user_agent = "mend/0.1";
  // Verify the server's certificate chain and that it names the URL's host. Default true.
  bool verify_peer = true;
  // PEM file of trusted CA certificates; empty (the default): the system's default paths.
  std::string ca_file;
};

// An absolute http(s) URL taken apart. `host` has no brackets ("::1" for http://[::1]/), `port` is
// always set (80 and 443 by default), `target` is the path and query ("/" at least), without the
// fragment. Scheme and host are lower case.
struct UrlParts {
  std::string scheme;
  std::string host;
  std::string port;
  std::string target;
};

// Parses an http or https URL; any other input gets an error of kind "configuration" that says
// what is wrong with it.
Result<UrlParts> parse_url(std::string_view url);

class HttpClient {
 public:
  // The executor runs the client's I/O; each connection gets its own strand on it, so an executor
  // run by many threads is fine.
  explicit HttpClient(boost::asio::any_io_executor executor, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request to the absolute `url` and reads the whole response. `timeout` bounds the
  // whole call, connecting included; nullopt means options.default_timeout.
  boost::asio::awaitable<Result<HttpResponse>> request(
      std::string method, std::string url, std::vector<HttpHeader> headers = {},
      std::string body = {}, std::optional<Duration> timeout = std::nullopt);

  // The same call for synchronous callers: runs request() on the client's executor and waits.
  Result<HttpResponse> request_sync(std::string method, std::string url,
                                    std::vector<HttpHeader> headers = {}, std::string body = {},
                                    std::optional<Duration> timeout = std::nullopt);

  // Idle keep-alive connections in the pool, all hosts together (for tests and metrics).
  std::size_t idle_connections() const;
  // Closes every idle pooled connection.
  void close_idle_connections();

  const HttpClientOptions& options() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the calls in flight
};

}  // namespace mend

#endif  // MEND_HTTP_CLIENT_H_
