// The configuration loader's scalars (durations, sizes), its words (suggestions, quoting) and
// its sections (config_checker.h).
#include "config_checker.h"

#include <arpa/inet.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "mend/core/text.h"
#include "mend/runtime/http_client.h"  // parse_url

namespace mend {

// --- Scalars: durations and sizes ---------------------------------------------------------------

namespace {

// Reads a non-negative decimal number ("12", "1.5") at the front of `text`; advances it.
std::optional<double> take_decimal(std::string_view& text) {
  std::size_t n = 0;
  bool digits = false;
  while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n, digits = true;
  if (n < text.size() && text[n] == '.') {
    ++n;
    bool fraction = false;
    while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n, fraction = true;
    if (!fraction) return std::nullopt;
  }
  if (!digits) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + n, value);
  if (ec != std::errc() || end != text.data() + n) return std::nullopt;
  text.remove_prefix(n);
  return value;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string_view rest = text;
  long double seconds = 0;
  if (auto bare = take_decimal(rest); bare && rest.empty()) {
    seconds = *bare;
  } else {
    rest = text;
    while (!rest.empty()) {
      std::optional<double> value = take_decimal(rest);
      if (!value) return std::nullopt;
      std::size_t unit_length = 0;
      while (unit_length < rest.size() &&
             std::isalpha(static_cast<unsigned char>(rest[unit_length])))
        ++unit_length;
      std::string_view unit = rest.substr(0, unit_length);
      rest.remove_prefix(unit_length);
      long double scale = 0;
      if (unit == "ms") {
        scale = 1e-3L;
      } else if (unit == "s") {
        scale = 1;
      } else if (unit == "m") {
        scale = 60;
      } else if (unit == "h") {
        scale = 3600;
      } else if (unit == "d") {
        scale = 86400;
      } else {
        return std::nullopt;
      }
      seconds += static_cast<long double>(*value) * scale;
    }
  }
  const long double nanos = std::round(seconds * 1e9L);
  if (!(nanos <= static_cast<long double>(std::numeric_limits<std::int64_t>::max() / 2))) {
    return std::nullopt;
  }
  return Duration(static_cast<std::int64_t>(nanos));
}

std::optional<std::size_t> parse_size(std::string_view text) {
  std::string_view rest = text;
  std::optional<double> value = take_decimal(rest);
  if (!value) return std::nullopt;
  const std::string unit = ascii_lower(rest);
  long double scale = 0;
  static constexpr std::pair<const char*, long double> kUnits[] = {
      {"", 1},
      {"b", 1},
      {"kb", 1e3L},
      {"mb", 1e6L},
      {"gb", 1e9L},
      {"tb", 1e12L},
      {"kib", 1024.0L},
      {"mib", 1024.0L * 1024},
      {"gib", 1024.0L * 1024 * 1024},
      {"tib", 1024.0L * 1024 * 1024 * 1024},
  };
  for (const auto& [name, factor] : kUnits) {
    if (unit == name) scale = factor;
  }
  if (scale == 0) return std::nullopt;
  const long double bytes = std::round(static_cast<long double>(*value) * scale);
  if (!(bytes <= static_cast<long double>(std::size_t{1} << 62))) return std::nullopt;
  return static_cast<std::size_t>(bytes);
}

// --- Config, ConfigProblem ---------------------------------------------------------------------

const AgentConfig* Config::agent(std::string_view name) const {
  for (const AgentConfig& a : agents) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string ConfigProblem::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += (out.empty() ? "" : ":") + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  if (!out.empty()) out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

namespace config_detail {

// --- Words: suggestions and quoting ------------------------------------------------------------

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate closest to `word`, when it is close enough to be a likely typo.
std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  const std::string lowered = ascii_lower(word);
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(lowered, ascii_lower(c));
    if (d < best_distance) best_distance = d, best = c;
  }
  const std::size_t allowed = std::clamp<std::size_t>(word.size() / 3, 1, 3);
  // A one-letter name is "close" to every other one: a guess needs something in common.
  if (best && best_distance <= allowed && best_distance < word.size()) return best;
  return std::nullopt;
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

// 'text', shortened and with control characters escaped: user input inside a message.
std::string in_quotes(std::string_view text) {
  std::string out = "'";
  std::size_t shown = 0;
  for (char c : text) {
    if (++shown > 60) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", u);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "'";
}

// "unknown X 'y' (did you mean 'z'?)" or "(expected one of: ...)".
std::string unknown_name(std::string_view what, std::string_view word,
                         const std::vector<std::string>& known) {
  std::string message = "unknown " + std::string(what) + " " + in_quotes(word);
  if (auto guess = closest(word, known)) return message + " (did you mean '" + *guess + "'?)";
  return message + " (expected one of: " + join(known) + ")";
}

std::vector<std::string> error_type_names() {
  std::vector<std::string> names;
  for (int i = 0; i < kErrorTypeCount; ++i) {
    names.emplace_back(to_string(static_cast<ErrorType>(i)));
  }
  return names;
}

int line_of(const YAML::Mark& mark) {
  return mark.is_null() ? 0 : mark.line + 1;
}

Section::Section(Checker& checker, Item item, std::string_view what, bool null_is_empty)
    : checker_(checker), item_(std::move(item)) {
  const YAML::Node& node = item_.value;
  if ((!node.IsDefined() || node.IsNull()) && null_is_empty) {
    ok_ = true;
    return;
  }
  if (!node.IsMap()) {
    checker_.at_value(item_, "expected " + std::string(what) + ", got " + Checker::found(node));
    return;
  }
  ok_ = true;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: the iterator hands out a temporary pair
    if (!key.IsScalar()) {
      checker_.problem(key.Mark(), item_.path, "expected a key name, got " + Checker::found(key));
      continue;
    }
    const std::string& name = key.Scalar();
    auto same = std::find_if(entries_.begin(), entries_.end(),
                             [&](const Entry& e) { return e.key == name; });
    if (same != entries_.end()) {
      checker_.problem(key.Mark(), child_path(item_.path, name),
                       "duplicate key " + in_quotes(name) + " (first at line " +
                           std::to_string(line_of(same->item.mark)) + ")");
      continue;
    }
    entries_.push_back({name, Item{it->second, key.Mark(), child_path(item_.path, name)}});
  }
}

std::optional<Item> Section::get(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  for (const Entry& e : entries_) {
    if (e.key == key) return e.item;
  }
  return std::nullopt;
}

std::optional<Item> Section::get_former(std::string_view key) {
  if (std::find(former_.begin(), former_.end(), key) == former_.end()) former_.emplace_back(key);
  for (const Entry& e : entries_) {
    if (e.key == key) return e.item;
  }
  return std::nullopt;
}

bool Section::has(std::string_view key) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.key == key; });
}

void Section::finish() {
  for (const Entry& e : entries_) {
    if (std::find(known_.begin(), known_.end(), e.key) != known_.end()) continue;
    if (std::find(former_.begin(), former_.end(), e.key) != former_.end()) continue;
    std::string message = "unknown key " + in_quotes(e.key);
    if (auto guess = closest(e.key, known_)) {
      message += " (did you mean '" + *guess + "'?)";
    } else {
      message += " (known keys: " + join(known_) + ")";
    }
    checker_.at_key(e.item, std::move(message));
  }
}

}  // namespace config_detail
}  // namespace mend
