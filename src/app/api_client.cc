#include "api_client.h"

// clang-format off
#include <utility>  // before Asio's headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <map>
#include <system_error>
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

// --- follow_events(): a small blocking reader of server-sent events -----------------------------
//
// The pooled HttpClient reads whole responses; an event stream never ends. This reader owns one
// non-blocking socket and polls it with the time left, so that a limit is always kept: connect,
// send the request, read the status line and headers, undo the chunked transfer encoding as the
// bytes come, and split the text into events (https://html.spec.whatwg.org/#event-stream-
// interpretation: "field: value" lines, a blank line ends an event, ':' lines are comments).

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxErrorBodyBytes = 64 * 1024;
// A line, or an event, that does not end within this much text is not mend's stream.
constexpr std::size_t kMaxPendingBytes = 8 * 1024 * 1024;
// mend sends a comment every 15 s on an idle stream: this much silence means it is gone.
constexpr auto kSilenceLimit = std::chrono::seconds(60);

class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// Milliseconds from now until `deadline`, for poll(): 0 once it has passed.
int millis_until(SteadyClock::time_point deadline) {
  const auto now = SteadyClock::now();
  if (deadline <= now) return 0;
  const std::int64_t left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::min<std::int64_t>(left, 1 << 30));
}

// Waits until `fd` is ready for `events` or `deadline` passes: true when ready.
Result<bool> wait_ready(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int ready = ::poll(&p, 1, millis_until(deadline));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return Error::from_code(std::error_code(errno, std::generic_category()));
  }
}

std::string errno_text(int error) {
  return std::error_code(error, std::generic_category()).message();
}

Result<Socket> connect_to(const UrlParts& url, SteadyClock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &found); rc != 0) {
    return Error::of_kind("connect", "cannot resolve " + url.host + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  std::string last = "no address for " + url.host;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Socket socket(
        ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (socket.get() < 0) {
      last = errno_text(errno);
      continue;
    }
    if (::connect(socket.get(), a->ai_addr, a->ai_addrlen) == 0) return socket;
    if (errno != EINPROGRESS) {
      last = errno_text(errno);
      continue;
    }
    Result<bool> ready = wait_ready(socket.get(), POLLOUT, deadline);
    if (!ready.ok()) return ready.error();
    if (!*ready) {
      return Error::of_kind("timeout", "connecting to " + url.host + ":" + url.port + " timed out");
    }
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(socket.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error == 0) return socket;
    last = errno_text(error);
  }
  return Error::of_kind("connect", "connecting to " + url.host + ":" + url.port + ": " + last);
}

Result<void> send_all(int fd, std::string_view data, SteadyClock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      Result<bool> ready = wait_ready(fd, POLLOUT, deadline);
      if (!ready.ok()) return ready.error();
      if (!*ready) return Error::of_kind("timeout", "sending the request timed out");
      continue;
    }
    return Error::of_kind("connect", "sending the request: " + errno_text(errno));
  }
  return {};
}

enum class Received { data, end_of_stream, deadline };

// Appends what the socket has to `into`, waiting for it until `deadline`.
Result<Received> receive(int fd, std::string& into, SteadyClock::time_point deadline) {
  for (;;) {
    char chunk[16 * 1024];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      into.append(chunk, static_cast<std::size_t>(n));
      return Received::data;
    }
    if (n == 0) return Received::end_of_stream;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Error::of_kind("connect", "reading the stream: " + errno_text(errno));
    }
    Result<bool> ready = wait_ready(fd, POLLIN, deadline);
    if (!ready.ok()) return ready.error();
    if (!*ready) return Received::deadline;
  }
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

struct ResponseHead {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

std::optional<ResponseHead> parse_head(std::string_view head) {
  ResponseHead out;
  std::size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 200 OK"
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line[8] != ' ') {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, out.status);
  if (ec != std::errc() || end != status_line.data() + 12) return std::nullopt;
  while (eol != std::string_view::npos) {
    head.remove_prefix(eol + 2);
    eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    if (line.empty()) continue;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    out.headers[ascii_lower(trim(line.substr(0, colon)))] =
        std::string(trim(line.substr(colon + 1)));
  }
  return out;
}

// Undoes the chunked transfer encoding (RFC 9112, 7.1) as the bytes come.
class Dechunker {
 public:
  // Moves the decoded part of `in` to `out`, leaving an incomplete piece in `in`. False when the
  // encoding is malformed.
  bool feed(std::string& in, std::string& out) {
    for (;;) {
      switch (state_) {
        case State::size: {
          const std::size_t eol = in.find("\r\n");
          if (eol == std::string::npos) return in.size() <= 1024;
          std::string_view line(in.data(), eol);
          line = line.substr(0, line.find(';'));  // chunk extensions are ignored
          line = trim(line);
          std::size_t size = 0;
          auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
          if (line.empty() || ec != std::errc() || end != line.data() + line.size()) return false;
          in.erase(0, eol + 2);
          remaining_ = size;
          state_ = size == 0 ? State::trailer : State::data;
          break;
        }
        case State::data: {
          if (in.empty()) return true;
          const std::size_t take = std::min(remaining_, in.size());
          out.append(in, 0, take);
          in.erase(0, take);
          remaining_ -= take;
          if (remaining_ == 0) state_ = State::data_end;
          break;
        }
        case State::data_end:
          if (in.size() < 2) return true;
          if (in.compare(0, 2, "\r\n") != 0) return false;
          in.erase(0, 2);
          state_ = State::size;
          break;
        case State::trailer: {
          const std::size_t eol = in.find("\r\n");
          if (eol == std::string::npos) return in.size() <= kMaxHeaderBytes;
          in.erase(0, eol + 2);
          if (eol == 0) state_ = State::done;
          break;
        }
        case State::done:
          return true;
      }
    }
  }
  bool done() const noexcept { return state_ == State::done; }

 private:
  enum class State { size, data, data_end, trailer, done };
  State state_ = State::size;
  std::size_t remaining_ = 0;
};

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

}  // namespace

Result<void> ApiClient::follow_events(std::string_view path_and_query,
                                      const std::function<bool(const ServerEvent&)>& on_event,
                                      std::optional<std::chrono::milliseconds> limit) {
  const auto started = SteadyClock::now();
  const auto end = limit ? started + *limit : SteadyClock::time_point::max();  // the caller's limit
  // Connecting and the answer's head must come within the client's timeout too.
  const auto head_deadline = std::min(end, started + timeout_);
  auto fail = [&](const Error& cause) { return unreachable(base_url_, cause); };

  const std::string url = base_url_ + std::string(path_and_query);
  Result<UrlParts> parts = parse_url(url);
  if (!parts.ok()) return Error::of_kind("protocol", parts.error().message);
  if (parts->scheme != "http") {
    return Error::of_kind("protocol", "the event stream is read over plain http only, not " +
                                          parts->scheme + " (" + base_url_ + ")");
  }
  // A limit that passes before the stream's head has come is still a daemon that did not answer.
  Result<Socket> socket = connect_to(*parts, head_deadline);
  if (!socket.ok()) return fail(socket.error());
  const int fd = socket->get();
  const std::string host =
      parts->host.find(':') != std::string::npos ? "[" + parts->host + "]" : parts->host;
  std::string request = "GET " + parts->target + " HTTP/1.1\r\nHost: " + host + ":" + parts->port +
                        "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
                        "User-Agent: mend-cli/0.1\r\nConnection: close\r\n";
  if (!token_.empty()) request += "Authorization: Bearer " + token_ + "\r\n";
  request += "\r\n";
  if (Result<void> sent = send_all(fd, request, head_deadline); !sent.ok()) {
    return fail(sent.error());
  }

  // The status line and headers.
  std::string raw;
  std::size_t head_end = std::string::npos;
  while ((head_end = raw.find("\r\n\r\n")) == std::string::npos) {
    if (raw.size() > kMaxHeaderBytes) {
      return Error::of_kind("protocol", "the answer's headers exceed 64 KiB");
    }
    Result<Received> got = receive(fd, raw, head_deadline);
    if (!got.ok()) return fail(got.error());
    if (*got == Received::end_of_stream) {
      return fail(Error::of_kind("connect", "the connection closed before an answer"));
    }
    if (*got == Received::deadline) {
      return fail(Error::of_kind("timeout",
                                 "no answer within " + std::to_string(timeout_.count()) + " ms"));
    }
  }
  std::optional<ResponseHead> head = parse_head(std::string_view(raw).substr(0, head_end + 2));
  if (!head) return Error::of_kind("protocol", "a malformed HTTP answer from " + base_url_);
  raw.erase(0, head_end + 4);
  const bool chunked =
      ascii_lower(head->header("transfer-encoding")).find("chunked") != std::string::npos;
  Dechunker dechunker;

  if (head->status != 200) {
    // mend's error JSON: read it whole (bounded), for its message.
    std::optional<std::size_t> length;
    if (std::string cl = head->header("content-length"); !cl.empty()) {
      std::size_t n = 0;
      auto [p, ec] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
      if (ec == std::errc() && p == cl.data() + cl.size()) length = n;
    }
    ApiResponse response;
    response.status = head->status;
    response.content_type = head->header("content-type");
    for (;;) {
      if (chunked) {
        if (!dechunker.feed(raw, response.body)) break;
        if (dechunker.done()) break;
      } else {
        response.body += raw;
        raw.clear();
        if (length && response.body.size() >= *length) break;
      }
      if (response.body.size() > kMaxErrorBodyBytes) break;
      Result<Received> got = receive(fd, raw, head_deadline);
      if (!got.ok() || *got != Received::data) break;
    }
    return Error::http(head->status, "mend answered " + std::to_string(head->status) + ": " +
                                         response.error_message());
  }
  if (ascii_lower(head->header("content-type")).rfind("text/event-stream", 0) != 0) {
    return Error::of_kind("protocol", base_url_ + std::string(path_and_query) +
                                          " did not answer with an event stream (Content-Type: " +
                                          head->header("content-type") + ")");
  }

  EventParser parser;
  std::string text;  // decoded, not yet split into lines
  auto last_byte = SteadyClock::now();
  for (;;) {
    if (chunked) {
      if (!dechunker.feed(raw, text)) {
        return Error::of_kind("protocol", "a malformed chunked event stream");
      }
    } else {
      text += raw;
      raw.clear();
    }
    switch (parser.feed(text, on_event)) {
      case EventParser::Verdict::stop:
        return {};
      case EventParser::Verdict::malformed:
        return Error::of_kind("protocol", "an event stream line longer than 8 MiB");
      case EventParser::Verdict::more:
        break;
    }
    if (chunked && dechunker.done()) return {};  // mend ended the stream
    const auto now = SteadyClock::now();
    if (now >= end) return {};
    const auto silent_until = last_byte + kSilenceLimit;
    Result<Received> got = receive(fd, raw, std::min(end, silent_until));
    if (!got.ok()) return fail(got.error());
    if (*got == Received::end_of_stream) {
      // Without chunking the body ends with the connection; what remains is a partial line. A
      // chunked stream that stops before its last chunk was cut off: the daemon died or the
      // network failed, which is not the end mend gives a stream when it stops.
      if (!chunked) return {};
      return fail(Error::of_kind("connect", "the event stream was cut off"));
    }
    if (*got == Received::deadline) {
      if (SteadyClock::now() >= end) return {};
      return fail(Error::of_kind("timeout", "the event stream went silent for 60 s"));
    }
    last_byte = SteadyClock::now();
  }
}

}  // namespace mend::app
