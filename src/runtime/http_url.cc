// URLs (mend/runtime/http.h, mend/runtime/http_client.h): parse_url(), and without_credentials()
// and url_origin() for URLs shown in errors and logs.
#include <algorithm>
#include <boost/asio/ip/address_v6.hpp>
#include <string>
#include <string_view>

#include "http_client_errors.h"
#include "mend/core/text.h"
#include "mend/runtime/http.h"
#include "mend/runtime/http_client.h"

namespace mend {
namespace {

namespace net = boost::asio;

}  // namespace

using runtime_detail::configuration_error;
using runtime_detail::printable;

std::string without_credentials(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const std::size_t authority = scheme_end + 3;
  const std::size_t authority_end = std::min(url.find_first_of("/?#", authority), url.size());
  const std::size_t at = url.substr(0, authority_end).rfind('@');
  if (at == std::string_view::npos || at < authority) return std::string(url);
  return std::string(url.substr(0, authority)) + "***" + std::string(url.substr(at));
}

std::string url_origin(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "";
  const std::string clean = without_credentials(url);
  const std::size_t authority = scheme_end + 3;
  std::string_view host = std::string_view(clean).substr(authority);
  host = host.substr(0, host.find_first_of("/?#"));
  if (const std::size_t at = host.rfind('@'); at != std::string_view::npos) {
    host.remove_prefix(at + 1);
  }
  return clean.substr(0, authority) + std::string(host);
}

// --- parse_url ---------------------------------------------------------------------------------

Result<UrlParts> parse_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return configuration_error("invalid URL \"" + printable(without_credentials(url)) +
                               "\": " + why);
  };
  if (url.empty()) return bad("it is empty");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("it contains a space or a control character");
    }
  }
  std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return bad("no scheme (expected http:// or https://)");
  UrlParts parts;
  parts.scheme = ascii_lower(url.substr(0, scheme_end));
  if (parts.scheme != "http" && parts.scheme != "https") {
    return bad("unsupported scheme \"" + parts.scheme + "\" (expected http or https)");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  std::size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail =
      authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return bad("user names and passwords in URLs are not supported");
  }
  if (authority.empty()) return bad("no host");

  std::string_view port_text;
  if (authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 literal (no ']')");
    parts.host = ascii_lower(authority.substr(1, close - 1));
    boost::system::error_code ec;
    net::ip::make_address_v6(parts.host, ec);
    if (ec) return bad("\"[" + parts.host + "]\" is not an IPv6 address");
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected text after the IPv6 literal");
      port_text = after.substr(1);
    }
  } else {
    std::size_t colon = authority.rfind(':');
    std::string_view host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return bad("an IPv6 address must be written in brackets, as in http://[::1]:8080/");
    }
    if (host.empty()) return bad("no host");
    for (char c : host) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_';
      if (!ok) return bad("invalid character '" + printable(std::string(1, c)) + "' in the host");
    }
    parts.host = ascii_lower(host);
  }

  if (port_text.empty()) {
    parts.port = parts.scheme == "https" ? "443" : "80";
  } else {
    bool digits = port_text.size() <= 5 && std::all_of(port_text.begin(), port_text.end(),
                                                       [](char c) { return c >= '0' && c <= '9'; });
    long value = digits ? std::stol(std::string(port_text)) : 0;
    if (!digits || value < 1 || value > 65535) {
      return bad("port \"" + printable(port_text) + "\" is not a number from 1 to 65535");
    }
    parts.port = std::to_string(value);
  }

  tail = tail.substr(0, tail.find('#'));
  if (tail.empty()) {
    parts.target = "/";
  } else if (tail.front() == '?') {
    parts.target = "/" + std::string(tail);
  } else {
    parts.target = std::string(tail);
  }
  return parts;
}

}  // namespace mend
