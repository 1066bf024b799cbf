// File: mend/runtime/http.h
//
// HTTP messages as plain values, shared by mend's HTTP client (mend/runtime/http_client.h) and its
// small HTTP server (mend/runtime/http_server.h). They carry no transport detail, so that code
// which builds or inspects requests does not pull in Boost.Beast.
//
//   mend::HttpRequest request;
//   request.method = "POST";
//   request.target = "/task";
//   request.headers.push_back({"Content-Type", "application/json"});
//   request.body = R"({"type":"code_review"})";
//   std::string type = request.header("content-type");  // "application/json": names ignore case
//
// Header names are compared case-insensitively, as HTTP says; the first header of a name wins.
// Framing headers (Content-Length, Transfer-Encoding) are computed from the body by the client
// and the server; values given for them are replaced.
//
// Thread-safety: value types; distinct objects may be used from distinct threads.
#ifndef MEND_RUNTIME_HTTP_H_
#define MEND_RUNTIME_HTTP_H_

#include <string>
#include <string_view>
#include <vector>

namespace mend {

struct HttpHeader {
  std::string name;
  std::string value;
};

// The value of the first header called `name` (case-insensitive), or "" when there is none.
std::string find_header(const std::vector<HttpHeader>& headers, std::string_view name);

// RFC 9110 token: what a method or a header name may be made of.
bool is_http_token(std::string_view text) noexcept;
// A header value that cannot split the message: no CR, LF or NUL.
bool is_valid_header_value(std::string_view value) noexcept;

struct HttpRequest {
  std::string method = "GET";
  // On the server side, the path and query as received ("/task?x=1"). On the client side the URL
  // passed to the call says where to go.
  std::string target = "/";
  std::vector<HttpHeader> headers;
  std::string body;

  std::string header(std::string_view name) const { return find_header(headers, name); }
};

struct HttpResponse {
  int status = 200;
  std::vector<HttpHeader> headers;
  std::string body;

  std::string header(std::string_view name) const { return find_header(headers, name); }
};

// A URL fit for an error message or a log line: a user name and password in it
// ("https://user:secret@host/...") become "***". Anything that is not a URL is returned as is.
std::string without_credentials(std::string_view url);
// Only the URL's scheme, host and port ("https://hooks.slack.com"), for URLs that are secrets
// as a whole (a Slack or webhook URL whose path is its key); "" when it is not a URL.
std::string url_origin(std::string_view url);

// --- Implementation details below this line ---------------------------------------------------

namespace http_detail {
inline char lower_ascii(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
// Equal ignoring ASCII case, as header names and URL schemes compare.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower_ascii(a[i]) != lower_ascii(b[i])) return false;
  }
  return true;
}
}  // namespace http_detail

inline std::string find_header(const std::vector<HttpHeader>& headers, std::string_view name) {
  for (const HttpHeader& h : headers) {
    if (http_detail::iequals(h.name, name)) return h.value;
  }
  return {};
}

inline bool is_http_token(std::string_view text) noexcept {
  if (text.empty()) return false;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) ok = std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

inline bool is_valid_header_value(std::string_view value) noexcept {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

}  // namespace mend

#endif  // MEND_RUNTIME_HTTP_H_
