#include "api_client.h"

// clang-format off
#include <utility>  // before Asio's headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <exception>
#include <limits>
#include <thread>

#include "mend/agent_client.h"
#include "mend/http_client.h"
#include "mend/text.h"

namespace mend::app {

nlohmann::json ApiResponse::json() const {
  // Deeper nesting than mend ever sends would only blow the stack of whatever walks it later.
  if (!json_nesting_within(body)) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::string ApiResponse::error_message() const {
  nlohmann::json j = json();
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("message") && j["error"]["message"].is_string()) {
    return j["error"]["message"].get<std::string>();
  }
  return body;
}

struct ApiClient::Impl {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  HttpClient http{io.get_executor(), [] {
                    HttpClientOptions o;
                    o.connect_timeout = std::chrono::seconds(3);
                    o.user_agent = "mend-cli/0.1";
                    return o;
                  }()};
  std::thread thread{[this] { io.run(); }};

  ~Impl() {
    work.reset();
    io.stop();
    thread.join();
  }
};

ApiClient::ApiClient(std::string base_url, std::string token, std::chrono::milliseconds timeout)
    : base_url_(std::move(base_url)),
      token_(std::move(token)),
      timeout_(timeout),
      impl_(std::make_unique<Impl>()) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

ApiClient::~ApiClient() = default;

namespace {

Error unreachable(const std::string& base_url, const Error& cause) {
  return Error::of_kind("unreachable", "cannot reach mend at " + base_url + ": " + cause.message +
                                           " (is `mend serve` running there? set the address "
                                           "with --address or MEND_ADDRESS)");
}

Result<ApiResponse> to_api_response(const std::string& base_url, Result<HttpResponse> r) {
  if (!r.ok()) return unreachable(base_url, r.error());
  ApiResponse out;
  out.status = r->status;
  out.content_type = r->header("Content-Type");
  out.body = std::move(r->body);
  return out;
}

}  // namespace

Result<ApiResponse> ApiClient::get(std::string_view path_and_query) {
  std::vector<HttpHeader> headers;
  if (!token_.empty()) headers.push_back({"Authorization", "Bearer " + token_});
  return to_api_response(base_url_,
                         impl_->http.request_sync("GET", base_url_ + std::string(path_and_query),
                                                  std::move(headers), {}, timeout_));
}

Result<ApiResponse> ApiClient::post(std::string_view path_and_query, const nlohmann::json& body,
                                    std::vector<std::pair<std::string, std::string>> extra) {
  std::vector<HttpHeader> headers{{"Content-Type", "application/json"}};
  if (!token_.empty()) headers.push_back({"Authorization", "Bearer " + token_});
  for (auto& [name, value] : extra) headers.push_back({std::move(name), std::move(value)});
  return to_api_response(
      base_url_,
      impl_->http.request_sync("POST", base_url_ + std::string(path_and_query), std::move(headers),
                               body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                               timeout_));
}

// --- follow_events(): the event stream ----------------------------------------------------------
//
// mend::HttpClient reads whole responses and has no call that hands a body over as it comes; an
// event stream never ends. So the stream gets a connection of its own here, with Boost.Beast
// doing the HTTP/1.1 (the request, the answer's head, the chunked transfer encoding) as it does
// inside HttpClient, on an io_context of the call's own that the calling thread runs (the
// callback comes on that thread), each wait under a deadline so that a limit is always kept.
// What this file adds is the server-sent events themselves (https://html.spec.whatwg.org/
// #event-stream-interpretation: "field: value" lines, a blank line ends an event, ':' lines are
// comments).

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxErrorBodyBytes = 64 * 1024;
// A line, or an event, that does not end within this much text is not mend's stream.
constexpr std::size_t kMaxPendingBytes = 8 * 1024 * 1024;
// mend sends a comment every 15 s on an idle stream: this much silence means it is gone.
constexpr auto kSilenceLimit = std::chrono::seconds(60);

// Splits decoded stream text into events.
class EventParser {
 public:
  enum class Verdict { more, stop, malformed };
  // Consumes the complete lines of `text`; calls `on_event` for each event they complete.
  Verdict feed(std::string& text, const std::function<bool(const ServerEvent&)>& on_event) {
    std::size_t start = 0;
    for (;;) {
      const std::size_t eol = text.find('\n', start);
      if (eol == std::string::npos) break;
      std::string_view line(text.data() + start, eol - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      start = eol + 1;
      if (!take_line(line, on_event)) {
        text.erase(0, start);
        return Verdict::stop;
      }
    }
    text.erase(0, start);
    if (text.size() > kMaxPendingBytes || pending_.data.size() > kMaxPendingBytes) {
      return Verdict::malformed;
    }
    return Verdict::more;
  }

 private:
  // False when the callback asked to stop.
  bool take_line(std::string_view line, const std::function<bool(const ServerEvent&)>& on_event) {
    if (line.empty()) {
      // The end of an event; one without data is not dispatched (as browsers do).
      ServerEvent event = std::move(pending_);
      const bool has_data = has_data_;
      pending_ = ServerEvent{};
      has_data_ = false;
      if (!has_data) return true;
      if (event.name.empty()) event.name = "message";
      return on_event(event);
    }
    if (line.front() == ':') return true;  // a comment: mend's greeting and keep-alives
    std::string_view field = line;
    std::string_view value;
    if (std::size_t colon = line.find(':'); colon != std::string_view::npos) {
      field = line.substr(0, colon);
      value = line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (field == "data") {
      if (has_data_) pending_.data += '\n';
      pending_.data += value;
      has_data_ = true;
    } else if (field == "event") {
      pending_.name = std::string(value);
    } else if (field == "id") {
      pending_.id = std::string(value);
    }
    // "retry" and unknown fields are ignored.
    return true;
  }

  ServerEvent pending_;
  bool has_data_ = false;
};

// One follow_events() call, as the reading coroutine needs it.
struct StreamCall {
  std::string base_url;
  std::string path_and_query;
  UrlParts url;
  std::string token;
  std::chrono::milliseconds timeout;
  SteadyClock::time_point head_deadline;  // connecting, sending and the answer's head
  SteadyClock::time_point end;            // the caller's limit
  const std::function<bool(const ServerEvent&)>* on_event;
};

// Beast's parser found the bytes malformed (rather than the connection failing).
bool is_parse_error(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error{}).category();
}

// Reads the next piece of the answer's body into `into`, within the stream's deadline.
net::awaitable<boost::system::error_code> read_body_piece(
    beast::tcp_stream& stream, beast::flat_buffer& buffer,
    http::response_parser<http::buffer_body>& parser, std::string& into) {
  char piece[16 * 1024];
  parser.get().body().data = piece;
  parser.get().body().size = sizeof piece;
  boost::system::error_code ec;
  co_await http::async_read_some(stream, buffer, parser,
                                 net::redirect_error(net::use_awaitable, ec));
  if (ec == http::error::need_buffer) ec = {};  // the piece is full: the rest comes next time
  into.append(piece, sizeof piece - parser.get().body().size);
  co_return ec;
}

net::awaitable<Result<void>> read_events(const StreamCall& call) {
  auto fail = [&](const std::string& cause) {
    return unreachable(call.base_url, Error::of_kind("connect", cause));
  };
  const UrlParts& url = call.url;
  beast::tcp_stream stream(co_await net::this_coro::executor);
  boost::system::error_code ec;

  // A limit that passes before the stream's head has come is still a daemon that did not answer.
  tcp::resolver resolver(stream.get_executor());
  const tcp::resolver::results_type endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec) co_return fail("cannot resolve " + url.host + ": " + ec.message());
  stream.expires_at(call.head_deadline);
  co_await stream.async_connect(endpoints, net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) {
    co_return fail("connecting to " + url.host + ":" + url.port + " timed out");
  }
  if (ec) co_return fail("connecting to " + url.host + ":" + url.port + ": " + ec.message());

  http::request<http::empty_body> request{http::verb::get, url.target, 11};
  const std::string host =
      url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  request.set(http::field::host, host + ":" + url.port);
  request.set(http::field::accept, "text/event-stream");
  request.set(http::field::cache_control, "no-cache");
  request.set(http::field::user_agent, "mend-cli/0.1");
  request.set(http::field::connection, "close");
  if (!call.token.empty()) request.set(http::field::authorization, "Bearer " + call.token);
  co_await http::async_write(stream, request, net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) co_return fail("sending the request timed out");
  if (ec) co_return fail("sending the request: " + ec.message());

  // The status line and headers.
  http::response_parser<http::buffer_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  // The stream's length has no limit; its lines have. (Not boost::none: Beast 1.74 then refuses
  // every Content-Length.)
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  beast::flat_buffer buffer;
  co_await http::async_read_header(stream, buffer, parser,
                                   net::redirect_error(net::use_awaitable, ec));
  if (ec == http::error::header_limit) {
    co_return Error::of_kind("protocol", "the answer's headers exceed 64 KiB");
  }
  if (ec == beast::error::timeout) {
    co_return fail("no answer within " + std::to_string(call.timeout.count()) + " ms");
  }
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
    co_return fail("the connection closed before an answer");
  }
  if (ec && is_parse_error(ec)) {
    co_return Error::of_kind("protocol", "a malformed HTTP answer from " + call.base_url);
  }
  if (ec) co_return fail("reading the stream: " + ec.message());
  const int status = static_cast<int>(parser.get().result_int());
  const std::string content_type(parser.get()[http::field::content_type]);

  if (status != 200) {
    // mend's error JSON: read it whole (bounded), for its message.
    ApiResponse response;
    response.status = status;
    response.content_type = content_type;
    while (!parser.is_done() && response.body.size() <= kMaxErrorBodyBytes) {
      if (co_await read_body_piece(stream, buffer, parser, response.body)) break;
    }
    co_return Error::http(
        status, "mend answered " + std::to_string(status) + ": " + response.error_message());
  }
  if (ascii_lower(content_type).rfind("text/event-stream", 0) != 0) {
    co_return Error::of_kind(
        "protocol", call.base_url + call.path_and_query +
                        " did not answer with an event stream (Content-Type: " + content_type +
                        ")");
  }

  EventParser events;
  std::string text;  // decoded, not yet split into lines
  auto last_byte = SteadyClock::now();
  for (;;) {
    switch (events.feed(text, *call.on_event)) {
      case EventParser::Verdict::stop:
        co_return Result<void>{};
      case EventParser::Verdict::malformed:
        co_return Error::of_kind("protocol", "an event stream line longer than 8 MiB");
      case EventParser::Verdict::more:
        break;
    }
    // mend ended the stream with its last chunk; without chunking, the body ends with the
    // connection (what remains is a partial line).
    if (parser.is_done()) co_return Result<void>{};
    if (SteadyClock::now() >= call.end) co_return Result<void>{};
    stream.expires_at(std::min(call.end, last_byte + kSilenceLimit));
    ec = co_await read_body_piece(stream, buffer, parser, text);
    if (ec == beast::error::timeout) {
      if (SteadyClock::now() >= call.end) co_return Result<void>{};
      co_return fail("the event stream went silent for 60 s");
    }
    if (ec == http::error::partial_message) {
      // A chunked stream that stops before its last chunk was cut off: the daemon died or the
      // network failed, which is not the end mend gives a stream when it stops.
      if (!parser.chunked()) co_return Result<void>{};
      co_return fail("the event stream was cut off");
    }
    if (ec && is_parse_error(ec)) {
      co_return Error::of_kind("protocol", "a malformed chunked event stream");
    }
    if (ec) co_return fail("reading the stream: " + ec.message());
    last_byte = SteadyClock::now();
  }
}

}  // namespace

Result<void> ApiClient::follow_events(std::string_view path_and_query,
                                      const std::function<bool(const ServerEvent&)>& on_event,
                                      std::optional<std::chrono::milliseconds> limit) {
  const auto started = SteadyClock::now();
  StreamCall call;
  call.base_url = base_url_;
  call.path_and_query = std::string(path_and_query);
  call.token = token_;
  call.timeout = timeout_;
  call.end = limit ? started + *limit : SteadyClock::time_point::max();
  // Connecting and the answer's head must come within the client's timeout too.
  call.head_deadline = std::min(call.end, started + timeout_);
  call.on_event = &on_event;
  Result<UrlParts> parts = parse_url(base_url_ + call.path_and_query);
  if (!parts.ok()) return Error::of_kind("protocol", parts.error().message);
  if (parts->scheme != "http") {
    return Error::of_kind("protocol", "the event stream is read over plain http only, not " +
                                          parts->scheme + " (" + base_url_ + ")");
  }
  call.url = std::move(*parts);

  net::io_context io;
  std::optional<Result<void>> result;
  std::exception_ptr thrown;
  net::co_spawn(io, read_events(call), [&](std::exception_ptr e, Result<void> r) {
    thrown = e;
    result.emplace(std::move(r));
  });
  io.run();
  if (thrown) std::rethrow_exception(thrown);  // from the callback
  return std::move(*result);
}

}  // namespace mend::app
