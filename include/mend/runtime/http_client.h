// File: mend/runtime/http_client.h
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
//   - a bad URL, method or header, or an unreadable ca_file: kind "configuration";
//   - the call's CallCancel was cancelled: code std::errc::operation_canceled, kind "cancelled",
//     stop StopReason::cancelled (a local refusal: the caller gave up on it).
// An HTTP error status is not an error at this layer: a 503 is a successful HttpResponse.
//
// Cancelling (mend/runtime/call_cancel.h): request() takes an optional handle; cancel() closes the
// call's connection (on its strand), so the call ends at once with the cancelled error, whatever
// step it is in (name resolution excepted: it ends once the name is resolved). A call cancelled
// before it has a connection fails at once without one. A cancelled call's connection is never
// returned to the pool, even when its response was complete.
//
// A pooled connection that the server closed meanwhile is detected when the request fails before
// any byte of the response arrives; the request is then sent once more on a fresh connection.
//
// Streams: request_stream() hands the response over as it comes, for bodies that are long or
// never end (server-sent events): the status and headers once they are read, then the body piece
// by piece (the chunked transfer encoding undone), until the body ends, a handler says stop, the
// caller's deadline passes, or the connection fails or goes silent. Its result says which, and
// for a failure also which step failed, so that a caller may word its own messages.
//
//   mend::HttpStreamHandlers handlers;
//   handlers.on_head = [&](const mend::HttpResponse& head) { return head.status == 200; };
//   handlers.on_body = [&](std::string_view piece) { parser.feed(piece); return !parser.done(); };
//   mend::HttpStreamLimits limits;
//   limits.deadline = std::chrono::minutes(5);           // follow for five minutes at most
//   limits.silence_timeout = std::chrono::seconds(60);   // a server that says nothing is gone
//   limits.max_body_bytes = mend::HttpStreamLimits::kUnlimited;
//   mend::HttpStreamResult r = client.request_stream_sync(
//       "GET", "http://127.0.0.1:7070/v1/events", {{"Accept", "text/event-stream"}}, {},
//       handlers, limits);
//   if (!r.ok()) log(r.error->message);  // r.failure: silence, cut_off, connect, ...
//
// Thread-safety: all methods may be called concurrently from any thread; the pool is shared and
// locked. Calls in flight keep the client's state alive, so the client may be destroyed before
// they finish; the executor must outlive them. request_sync() and request_stream_sync() must not
// be called from a thread that runs the client's executor (they would wait for themselves). A
// stream's handlers are called on the client's executor (on the connection's strand), one at a
// time and in order, never after the call has returned.
#ifndef MEND_RUNTIME_HTTP_CLIENT_H_
#define MEND_RUNTIME_HTTP_CLIENT_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/result.h"
#include "mend/runtime/call_cancel.h"
#include "mend/runtime/http.h"

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

// --- Streamed responses (request_stream) --------------------------------------------------------

// What a streamed call calls back with. Both are optional; a handler that returns false ends the
// call at once (HttpStreamEnd::stopped) and the connection is closed. An exception a handler
// throws ends the call too and comes out of request_stream() (request_stream_sync() rethrows it).
struct HttpStreamHandlers {
  // The status and headers (body empty), once, when they have been read; any status, an error
  // status included. Not called when the call fails before them.
  std::function<bool(const HttpResponse& head)> on_head;
  // Each piece of the body as it arrives, in order: never empty, at most max_piece_bytes, the
  // chunked transfer encoding undone. The view is valid during the call only.
  std::function<bool(std::string_view piece)> on_body;
};

struct HttpStreamLimits {
  // For a body of any length, max_body_bytes = kUnlimited.
  static constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();

  // Connecting (within options.connect_timeout as well), sending the request and reading the
  // status and headers; nullopt (the default): options.default_timeout.
  std::optional<Duration> head_timeout;
  // The whole call, from its start. Passing before the head is read, it fails the call like the
  // head timeout; passing while the body streams, it ends the call: HttpStreamEnd::deadline.
  // Duration::max() (the default): no deadline.
  Duration deadline = Duration::max();
  // The longest wait for the next byte of the body (chunk framing counts); a longer silence fails
  // the call (HttpStreamFailure::silence). Duration::max() (the default): no limit.
  Duration silence_timeout = Duration::max();
  // Status line and headers larger than this fail the call. Default 64 KiB.
  std::uint32_t max_header_bytes = 64 * 1024;
  // The body's total size; nullopt (the default): options.max_response_bytes. An endless stream
  // says kUnlimited.
  std::optional<std::uint64_t> max_body_bytes;
  // The largest piece handed to on_body at once. Default 16 KiB.
  std::size_t max_piece_bytes = 16 * 1024;
};

// How a streamed call ended.
enum class HttpStreamEnd : std::uint8_t {
  complete,  // the body ended where its framing says: its last chunk, its Content-Length, or the
             // close of a body that runs to the close (as a HEAD, 204 or 304 has no body)
  stopped,   // a handler returned false
  deadline,  // limits.deadline passed while the body streamed
  failed,    // see HttpStreamResult::failure and error
};

// Which step of a streamed call failed, and how; the Error kind it comes with in parentheses.
enum class HttpStreamFailure : std::uint8_t {
  none,             // the call did not fail
  invalid_request,  // a bad URL, method, header or limit, an unreadable ca_file ("configuration")
  resolve,          // the host name could not be resolved ("connect")
  connect,          // connecting failed: refused, unreachable, reset in the TLS handshake
                    // ("connect")
  connect_timeout,  // resolving, connecting and the TLS handshake did not finish within
                    // options.connect_timeout or the head timeout ("timeout")
  tls,              // the TLS handshake failed or the certificate was not trusted ("tls")
  send,             // sending the request failed ("connect")
  send_timeout,     // sending the request did not finish within the head timeout ("timeout")
  closed_before_head,  // the server closed the connection before the whole head ("connect")
  head_timeout,        // the status and headers did not come within the head timeout ("timeout")
  head_too_large,      // they exceed max_header_bytes ("response_too_large")
  malformed_head,      // they are not HTTP/1.x ("protocol")
  read,                // reading failed otherwise (a reset, ...), before or after the head
                       // ("connect")
  silence,             // no byte of the body for silence_timeout ("timeout")
  cut_off,             // the connection closed before the body's end: in a chunk or before the
                       // last chunk, short of Content-Length ("connect", connection_reset)
  malformed_body,      // bad chunk framing ("protocol")
  body_too_large,      // the body, or its Content-Length, exceeds max_body_bytes
                       // ("response_too_large")
};

struct HttpStreamResult {
  HttpStreamEnd end = HttpStreamEnd::failed;
  HttpStreamFailure failure = HttpStreamFailure::none;
  // Set when the call failed: an error like request()'s (kind, code, a message naming the call),
  // unclassified.
  std::optional<Error> error;
  // When the call failed, the cause in the transport's own words, without the call's name
  // ("Connection refused", "the server closed the connection", "timed out"), for a caller that
  // words its own message.
  std::string reason;

  bool ok() const noexcept { return end != HttpStreamEnd::failed; }
};

class HttpClient {
 public:
  // The executor runs the client's I/O; each connection gets its own strand on it, so an executor
  // run by many threads is fine.
  explicit HttpClient(boost::asio::any_io_executor executor, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request to the absolute `url` and reads the whole response. `timeout` bounds the
  // whole call, connecting included; nullopt means options.default_timeout. `cancel`, when set,
  // stops the call (above).
  boost::asio::awaitable<Result<HttpResponse>> request(
      std::string method, std::string url, std::vector<HttpHeader> headers = {},
      std::string body = {}, std::optional<Duration> timeout = std::nullopt,
      std::shared_ptr<CallCancel> cancel = nullptr);

  // The same call for synchronous callers: runs request() on the client's executor and waits.
  Result<HttpResponse> request_sync(std::string method, std::string url,
                                    std::vector<HttpHeader> headers = {}, std::string body = {},
                                    std::optional<Duration> timeout = std::nullopt);

  // Sends one request and streams the response to `handlers` as it comes (see HttpStreamHandlers,
  // HttpStreamLimits and HttpStreamResult above). The request is made as request() makes it: a
  // pooled connection when there is one (sent once more on a fresh one when the server had
  // closed it), the same headers; a connection goes back to the pool only when the body was
  // read to its end and the server keeps it alive. HTTP error statuses are not failures: the
  // head and the body come to the handlers all the same.
  boost::asio::awaitable<HttpStreamResult> request_stream(std::string method, std::string url,
                                                          std::vector<HttpHeader> headers,
                                                          std::string body,
                                                          HttpStreamHandlers handlers,
                                                          HttpStreamLimits limits = {});

  // The same call for synchronous callers: runs request_stream() on the client's executor and
  // waits for its end. The handlers run on the executor's threads meanwhile; an exception from
  // one is rethrown here.
  HttpStreamResult request_stream_sync(std::string method, std::string url,
                                       std::vector<HttpHeader> headers, std::string body,
                                       HttpStreamHandlers handlers, HttpStreamLimits limits = {});

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

#endif  // MEND_RUNTIME_HTTP_CLIENT_H_
