// `mend tickets`, `mend incidents`, `mend ack` and `mend resolve`: the escalation records.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "json_fields.h"
#include "operator_commands.h"
#include "operator_format.h"
#include "table.h"

namespace mend::app {
namespace {

using nlohmann::json;
using WallClock = std::chrono::system_clock;

// What the SLA column says: the time left to acknowledge, BREACHED once past, or whether the
// acknowledgement (or resolution) came in time.
std::string sla_text(const json& record, WallClock::time_point now) {
  std::optional<WallClock::time_point> due = parse_timestamp(json_text(record, "sla_due", ""));
  if (!due) return "-";
  std::optional<WallClock::time_point> answered =
      parse_timestamp(json_text(record, "acknowledged_at", ""));
  if (!answered) answered = parse_timestamp(json_text(record, "resolved_at", ""));
  if (answered) return *answered <= *due ? "met" : "missed";
  const double left = seconds_between(now, *due);
  if (left > 0) return "in " + short_duration(left);
  return "BREACHED " + short_duration(-left) + " ago";
}

// "TKT-3" -> tickets/TKT-3, "INC-7" -> incidents/INC-7, "ESC-5" or "5" -> escalations/5.
std::optional<std::string> record_path(const std::string& id) {
  auto digits_only = [](std::string_view text) {
    return !text.empty() && text.size() <= 18 &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string upper = id;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.rfind("TKT-", 0) == 0 && digits_only(std::string_view(upper).substr(4))) {
    return "/v1/tickets/" + upper;
  }
  if (upper.rfind("INC-", 0) == 0 && digits_only(std::string_view(upper).substr(4))) {
    return "/v1/incidents/" + upper;
  }
  if (upper.rfind("ESC-", 0) == 0 && digits_only(std::string_view(upper).substr(4))) {
    return "/v1/escalations/" + upper.substr(4);
  }
  if (digits_only(upper)) return "/v1/escalations/" + upper;
  return std::nullopt;
}

}  // namespace

int run_records(Session& s, const std::string& collection, const std::string& status) {
  std::string path = "/v1/" + collection;
  if (!status.empty()) path += "?status=" + status;
  std::optional<ApiResponse> r = s.get(path);
  return print_answer(s, r, [&](const json& body) {
    const json& records = json_member(body, "records");
    if (!records.is_array() || records.empty()) {
      s.out() << "no " << (status.empty() ? "" : status + " ") << collection << "\n";
      return exit_status::kOk;
    }
    const auto now = WallClock::now();
    TextTable table({{"ID"},
                     {"LEVEL"},
                     {"STATUS"},
                     {"AGE", Align::right},
                     {"SLA"},
                     {"OCCURRENCES", Align::right},
                     {"AGENT"},
                     {"TITLE", Align::left, 60, true}});
    for (const json& rec : records) {
      std::optional<WallClock::time_point> created =
          parse_timestamp(json_text(rec, "created_at", ""));
      table.add_row({json_text(rec, "id"), json_text(rec, "level"), json_text(rec, "status"),
                     created ? short_duration(seconds_between(*created, now)) : "-",
                     sla_text(rec, now), json_text(rec, "occurrences"), json_text(rec, "agent"),
                     json_text(rec, "title")});
    }
    s.out() << table.render(terminal_width());
    return exit_status::kOk;
  });
}

std::string default_actor() {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "operator";
}

int run_record_action(Session& s, const std::string& action, const std::string& id,
                      const std::string& by) {
  std::optional<std::string> path = record_path(id);
  if (!path) {
    return s.fail("'" + id + "' is not a record id (TKT-3, INC-7, ESC-5 or a number)",
                  exit_status::kUsage);
  }
  if (by.empty()) return s.fail("--by must not be empty", exit_status::kUsage);
  std::optional<ApiResponse> r = s.post(*path + "/" + action, {{"by", by}});
  return print_answer(s, r, [&](const json& body) {
    const bool ack = action == "acknowledge";
    s.out() << json_text(body, "id", id) << " " << (ack ? "acknowledged" : "resolved") << " by "
            << json_text(body, ack ? "acknowledged_by" : "resolved_by", by) << " (status "
            << json_text(body, "status") << ", " << json_text(body, "level") << ": "
            << printable(json_text(body, "title")) << ")\n";
    return exit_status::kOk;
  });
}

}  // namespace mend::app
