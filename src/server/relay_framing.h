// Internal to the relay's files: how the relay frames HTTP messages. Framing (a Beast parser
// that copies nothing: the relay passes the bytes on as they came) and the checks it runs on a
// request's target. The Beast names the relay's files use are declared here too.
#ifndef MEND_SERVER_RELAY_FRAMING_H_
#define MEND_SERVER_RELAY_FRAMING_H_

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mend/core/clock.h"

namespace mend::server_detail {

namespace beast = boost::beast;
namespace http = beast::http;
using error_code = boost::system::error_code;

// Why the relay will not pass a request target on, or "": only origin form ("/path?query"), and
// no path segment that a front end in the agent's place might resolve or decode into another
// path ("." and "..", "%2e", an encoded "/" or "\", a backslash): with a base path, such a
// target could climb out of it, or past the /admin check.
std::string unsafe_target_reason(std::string_view target);

// Whether an origin-form target reaches an agent's admin hooks: its path's first segment is
// "admin", however written (repeated slashes, percent-encoded, any case), as an agent's router
// might read it.
bool is_admin_target(std::string_view target);

// Frames an HTTP message without copying it: the relay passes the bytes on as they came, and
// needs from the parser only where the message ends and a few header facts.
template <bool isRequest>
class Framing final : public http::basic_parser<isRequest> {
 public:
  int status = 0;
  bool head_request = false;
  bool idempotent = false;       // GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 9.2.2)
  bool expect_continue = false;  // the client waits for 100 Continue before its body
  bool admin = false;            // the target is /admin or under it (an agent's admin hooks)
  std::string unsafe_target;     // why the target is not passed on ("" when it is fine)
  std::optional<Duration> retry_after;

 private:
  void on_request_impl(http::verb method, beast::string_view, beast::string_view target,
                       int version, error_code& ec) override {
    unsafe_target = unsafe_target_reason(target);
    admin = unsafe_target.empty() && is_admin_target(target);
    // HTTP/1.0 and 1.1 only: Beast reads any "HTTP/d.d", and a request line that says 2.0 or
    // 0.9 means something else than what the relay would pass on.
    if (version != 10 && version != 11) ec = http::error::bad_version;
    head_request = method == http::verb::head;
    idempotent = method == http::verb::get || method == http::verb::head ||
                 method == http::verb::put || method == http::verb::delete_ ||
                 method == http::verb::options || method == http::verb::trace;
  }
  void on_response_impl(int code, beast::string_view, int, error_code&) override { status = code; }
  void on_field_impl(http::field name, beast::string_view, beast::string_view value,
                     error_code&) override {
    if (name == http::field::content_length) {
      ++content_lengths_;
    } else if (name == http::field::transfer_encoding) {
      transfer_encoding_ = true;
    } else if (name == http::field::expect) {
      expect_continue = beast::iequals(value, "100-continue");
    } else if (name == http::field::retry_after) {
      double seconds = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec == std::errc() && end == value.data() + value.size() && seconds >= 0) {
        retry_after = from_seconds(seconds);
      }
    }
  }
  void on_header_impl(error_code& ec) override {
    // Both framings at once is how requests are smuggled past proxies: refused, not passed on.
    if (content_lengths_ > 1 || (content_lengths_ > 0 && transfer_encoding_)) {
      ec = http::error::bad_content_length;
    }
    // A request's codings must end in chunked (RFC 9112 6.3): else its end is unknowable, and
    // an agent that reads it otherwise than mend would take the next request for its body.
    if (isRequest && transfer_encoding_ && !this->chunked()) {
      ec = http::error::bad_transfer_encoding;
    }
  }
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code&) override {
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  int content_lengths_ = 0;
  bool transfer_encoding_ = false;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_RELAY_FRAMING_H_
