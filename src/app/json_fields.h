// File: src/app/json_fields.h (internal to the `mend` binary)
//
// Reading members of JSON that came from the network (the daemon, agents) without ever throwing:
// the operator commands and the demo's report print whatever shape arrives, and a member of an
// unexpected type shows as the fallback instead of ending the program.
//
//   std::string name = json_text(agent, "name");            // "-" when absent
//   double calls = json_number(agent["counters"], "calls");  // 0 when absent or not a number
//   for (const json& r : json_array(report, "records")) ...  // empty when absent
//
// Thread-safety: pure functions.
#ifndef MEND_APP_JSON_FIELDS_H_
#define MEND_APP_JSON_FIELDS_H_

#include <nlohmann/json.hpp>
#include <string>

namespace mend::app {

// A member as text for a terminal: strings as they are, booleans "yes"/"no", numbers and
// anything else as JSON, `fallback` when absent or null. Control characters (an agent's message
// may carry escape sequences) become spaces.
inline std::string json_text(const nlohmann::json& j, const char* key,
                             const std::string& fallback = "-") {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  std::string out;
  if (it->is_string()) {
    out = it->get<std::string>();
  } else if (it->is_boolean()) {
    out = it->get<bool>() ? "yes" : "no";
  } else {
    out = it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

// A numeric member, or `fallback`.
inline double json_number(const nlohmann::json& j, const char* key, double fallback = 0) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

// A member, or null when absent (or `j` is not an object).
inline const nlohmann::json& json_member(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// An array member, or an empty array.
inline const nlohmann::json& json_array(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  const nlohmann::json& m = json_member(j, key);
  return m.is_array() ? m : kEmpty;
}

}  // namespace mend::app

#endif  // MEND_APP_JSON_FIELDS_H_
