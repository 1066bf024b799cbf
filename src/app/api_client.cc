#include "api_client.h"

// clang-format off
#include <utility>  // before Asio's headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <thread>

#include "mend/core/text.h"
#include "mend/runtime/agent_client.h"
#include "mend/runtime/http_client.h"

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
// The HTTP/1.1 (the request, the answer's head, the chunked transfer encoding, every deadline) is
// mend::HttpClient's streamed call, on the client's I/O thread like get() and post(). What this
// file adds is the server-sent events themselves (https://html.spec.whatwg.org/
// #event-stream-interpretation: "field: value" lines, a blank line ends an event, ':' lines are
// comments), and the words an operator reads when the stream fails.

namespace {

constexpr std::uint32_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxErrorBodyBytes = 64 * 1024;
constexpr std::size_t kPieceBytes = 16 * 1024;
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

// What the stream's handlers learn, for follow_events() to decide with once the call is over.
struct StreamState {
  bool got_head = false;
  bool chunked = false;
  ApiResponse head;               // status and Content-Type; the body of an error answer
  std::optional<Error> rejected;  // not an event stream, or a malformed one
  EventParser events;
  std::string text;  // decoded, not yet split into lines
};

// The last transfer coding is chunked (RFC 9112 6.1): the body has an end of its own.
bool is_chunked(std::string_view transfer_encoding) {
  std::string codings = ascii_lower(transfer_encoding);
  while (!codings.empty() && (codings.back() == ' ' || codings.back() == '\t')) codings.pop_back();
  const std::size_t comma = codings.rfind(',');
  std::string_view last =
      std::string_view(codings).substr(comma == std::string::npos ? 0 : comma + 1);
  while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
  return last == "chunked";
}

}  // namespace

Result<void> ApiClient::follow_events(std::string_view path_and_query,
                                      const std::function<bool(const ServerEvent&)>& on_event,
                                      std::optional<std::chrono::milliseconds> limit) {
  const std::string url = base_url_ + std::string(path_and_query);
  Result<UrlParts> parts = parse_url(url);
  if (!parts.ok()) return Error::of_kind("protocol", parts.error().message);
  const UrlParts& where = *parts;
  auto fail = [&](const std::string& cause) {
    return unreachable(base_url_, Error::of_kind("connect", cause));
  };

  std::vector<HttpHeader> headers{
      {"Accept", "text/event-stream"}, {"Cache-Control", "no-cache"}, {"Connection", "close"}};
  if (!token_.empty()) headers.push_back({"Authorization", "Bearer " + token_});
  HttpStreamLimits limits;
  // Connecting and the answer's head must come within the client's timeout (and the limit); a
  // limit that passes before the head has come is still a daemon that did not answer.
  limits.head_timeout = std::max(timeout_, std::chrono::milliseconds(1));
  if (limit) limits.deadline = std::max(*limit, std::chrono::milliseconds(1));
  limits.silence_timeout = kSilenceLimit;
  limits.max_header_bytes = kMaxHeaderBytes;
  // The stream's length has no limit; its lines have (EventParser).
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  limits.max_piece_bytes = kPieceBytes;

  StreamState state;
  HttpStreamHandlers handlers;
  handlers.on_head = [&](const HttpResponse& head) {
    state.got_head = true;
    state.head.status = head.status;
    state.head.content_type = head.header("Content-Type");
    state.chunked = is_chunked(head.header("Transfer-Encoding"));
    // An error answer: mend's error JSON, read whole (bounded) for its message.
    if (head.status != 200) return true;
    if (ascii_lower(state.head.content_type).rfind("text/event-stream", 0) != 0) {
      state.rejected = Error::of_kind("protocol", url +
                                                      " did not answer with an event stream "
                                                      "(Content-Type: " +
                                                      state.head.content_type + ")");
      return false;
    }
    return true;
  };
  handlers.on_body = [&](std::string_view piece) {
    if (state.head.status != 200) {
      state.head.body.append(piece);
      return state.head.body.size() <= kMaxErrorBodyBytes;
    }
    state.text.append(piece);
    switch (state.events.feed(state.text, on_event)) {
      case EventParser::Verdict::stop:
        return false;
      case EventParser::Verdict::malformed:
        state.rejected = Error::of_kind("protocol", "an event stream line longer than 8 MiB");
        return false;
      case EventParser::Verdict::more:
        break;
    }
    return true;
  };

  // The handlers run on the client's I/O thread while this one waits; what they throw (on_event's
  // exceptions) is thrown here.
  const HttpStreamResult r = impl_->http.request_stream_sync("GET", url, std::move(headers), {},
                                                             std::move(handlers), limits);
  if (state.got_head && state.head.status != 200) {
    // Whatever came of the error answer's body, within its bound and the stream's limits.
    return Error::http(state.head.status, "mend answered " + std::to_string(state.head.status) +
                                              ": " + state.head.error_message());
  }
  if (state.rejected) return std::move(*state.rejected);
  const std::string address = where.host + ":" + where.port;
  using F = HttpStreamFailure;
  switch (r.failure) {
    case F::none:
      // The stream's end (mend ended it with its last chunk; without chunking, with the
      // connection: what remains is a partial line), the callback's stop, or the limit.
      return Result<void>{};
    case F::invalid_request:
      return Error::of_kind("protocol", r.error->message);
    case F::resolve:
      return fail("cannot resolve " + where.host + ": " + r.reason);
    case F::connect:
      return fail("connecting to " + address + ": " + r.reason);
    case F::connect_timeout:
      return fail("connecting to " + address + " timed out");
    case F::tls:
      return unreachable(base_url_, *r.error);
    case F::send_timeout:
      return fail("sending the request timed out");
    case F::send:
      return fail("sending the request: " + r.reason);
    case F::head_too_large:
      return Error::of_kind("protocol", "the answer's headers exceed 64 KiB");
    case F::head_timeout:
      return fail("no answer within " + std::to_string(timeout_.count()) + " ms");
    case F::closed_before_head:
      return fail("the connection closed before an answer");
    case F::malformed_head:
      return Error::of_kind("protocol", "a malformed HTTP answer from " + base_url_);
    case F::silence:
      return fail("the event stream went silent for 60 s");
    case F::cut_off:
      // A chunked stream that stops before its last chunk was cut off: the daemon died or the
      // network failed, which is not the end mend gives a stream when it stops. Without
      // chunking, the body ends with the connection.
      if (!state.chunked) return Result<void>{};
      return fail("the event stream was cut off");
    case F::malformed_body:
    case F::body_too_large:
      return Error::of_kind("protocol", "a malformed chunked event stream");
    case F::read:
      break;
  }
  return fail("reading the stream: " + r.reason);
}

}  // namespace mend::app
