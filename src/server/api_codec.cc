// The API's codec (api_codec.h): JSON answers and errors, request targets, bodies and the
// checks on what clients name things with.
#include "api_codec.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>

#include "mend/runtime/agent_client.h"

namespace mend::server_detail {

using nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

HttpResponse json_response(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = dump(body);
  return r;
}

HttpResponse raw_json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = std::move(body);
  return r;
}

HttpResponse error_response(int status, ErrorType type, const std::string& message) {
  return json_response(status, {{"error", {{"type", to_string(type)}, {"message", message}}}});
}

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int value = 0;
      auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
      if (ec == std::errc() && p == in.data() + i + 3) {
        out.push_back(static_cast<char>(value));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i] == '+' ? ' ' : in[i]);
  }
  return out;
}

Target parse_target(std::string_view target) {
  Target t;
  std::string_view path = target;
  if (std::size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
      std::size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      std::size_t eq = pair.find('=');
      std::string key = percent_decode(pair.substr(0, eq));
      std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
      if (!key.empty()) t.query[key] = value;
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  t.path = std::string(path);
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    std::size_t slash = path.find('/');
    t.segments.push_back(percent_decode(path.substr(0, slash)));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return t;
}

// A non-negative number of seconds from a query parameter; nullopt when absent, an error
// message when malformed.
std::optional<double> parse_seconds(const std::map<std::string, std::string>& query,
                                    const std::string& name, std::string* error) {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  double value = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
  if (ec != std::errc() || p != it->second.data() + it->second.size() || value < 0 ||
      !(value < 1e9)) {
    *error =
        "query parameter '" + name + "' must be a number of seconds >= 0, not '" + it->second + "'";
    return std::nullopt;
  }
  return value;
}

// Parses an API request body: an object, at most kMaxJsonDepth deep. Empty body: {}.
Result<json> parse_body(const std::string& body) {
  if (body.empty()) return json::object();
  if (!json_nesting_within(body)) {
    return Error::classified_as(
        ErrorType::validation_failed, Severity::low,
        "the request body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again with exceptions for the position of the mistake.
    try {
      json discarded = json::parse(body);
      (void)discarded;
    } catch (const json::parse_error& e) {
      return Error::classified_as(ErrorType::validation_failed, Severity::low,
                                  std::string("malformed JSON: ") + e.what());
    }
    return Error::classified_as(ErrorType::validation_failed, Severity::low, "malformed JSON");
  }
  if (!j.is_object()) {
    return Error::classified_as(ErrorType::validation_failed, Severity::low,
                                "the request body must be a JSON object");
  }
  return j;
}

std::string iso(WallTime t) {
  return to_iso8601(t);
}

json record_json(const EscalationRecord& r) {
  return json::parse(r.to_json());
}

// "TKT-3", "INC-7" or "3": the record number, and the kind the prefix names.
std::optional<std::pair<std::int64_t, std::optional<RecordKind>>> parse_record_id(
    const std::string& text) {
  std::string_view digits = text;
  std::optional<RecordKind> kind;
  if (text.rfind("TKT-", 0) == 0) {
    kind = RecordKind::ticket;
    digits.remove_prefix(4);
  } else if (text.rfind("INC-", 0) == 0) {
    kind = RecordKind::incident;
    digits.remove_prefix(4);
  }
  std::int64_t id = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || p != digits.data() + digits.size() || id <= 0) return std::nullopt;
  return std::make_pair(id, kind);
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof digest);
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// Visible ASCII but for what a URL path segment or a log line would misread.
bool is_plain_id(std::string_view id) {
  return std::all_of(id.begin(), id.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '/' && c != '?' && c != '#' && c != '%' && c != '"' &&
           c != '\\';
  });
}

// No control characters (a newline would forge a log line); UTF-8 otherwise welcome.
bool is_printable_text(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace mend::server_detail
