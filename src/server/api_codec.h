// The daemon API's codec: JSON answers and errors, request targets and bodies, the JSON of an
// escalation record, and the checks on what clients name things with (docs/api.md). Pure
// functions: no state, safe from any thread.
#ifndef MEND_SERVER_API_CODEC_H_
#define MEND_SERVER_API_CODEC_H_

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/runtime/http_server.h"
#include "mend/store/escalator.h"

namespace mend::server_detail {

// Limits on what clients name things with: ids travel in URLs and logs, names in logs and records.
inline constexpr std::size_t kMaxTaskIdBytes = 128;
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 256;
inline constexpr std::size_t kMaxActorBytes = 200;

// JSON text of `j`, invalid UTF-8 replaced rather than thrown on.
std::string dump(const nlohmann::json& j);
HttpResponse json_response(int status, const nlohmann::json& body);
HttpResponse raw_json_response(int status, std::string body);
// {"error": {"type": ..., "message": ...}}
HttpResponse error_response(int status, ErrorType type, const std::string& message);

// The target split into path segments and query parameters (percent-decoded).
struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
  std::string path;
};
std::string percent_decode(std::string_view in);
Target parse_target(std::string_view target);
// A non-negative number of seconds from a query parameter; nullopt when absent, an error
// message in *error when malformed.
std::optional<double> parse_seconds(const std::map<std::string, std::string>& query,
                                    const std::string& name, std::string* error);
// Parses an API request body: an object, at most kMaxJsonDepth deep. Empty body: {}.
Result<nlohmann::json> parse_body(const std::string& body);

std::string iso(WallTime t);
nlohmann::json record_json(const EscalationRecord& r);
// "TKT-3", "INC-7" or "3": the record number, and the kind the prefix names.
std::optional<std::pair<std::int64_t, std::optional<RecordKind>>> parse_record_id(
    const std::string& text);

bool equal_constant_time(const std::string& a, const std::string& b);
std::string sha256_hex(const std::string& data);
// Visible ASCII but for what a URL path segment or a log line would misread.
bool is_plain_id(std::string_view id);
// No control characters (a newline would forge a log line); UTF-8 otherwise welcome.
bool is_printable_text(std::string_view text);

}  // namespace mend::server_detail

#endif  // MEND_SERVER_API_CODEC_H_
