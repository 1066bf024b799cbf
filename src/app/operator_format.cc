// The operator commands' text helpers (operator_format.h).
#include "operator_format.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include "table.h"

namespace mend::app {

using WallClock = std::chrono::system_clock;

// "0s", "45s", "3m12s", "2h05m", "3d04h".
std::string short_duration(double seconds) {
  const auto s = static_cast<std::int64_t>(std::floor(std::max(0.0, seconds)));
  char buffer[32];
  if (s < 60) {
    std::snprintf(buffer, sizeof buffer, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buffer;
}

// Every line of `text` indented by two spaces.
std::string indented(const std::string& text) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size() - 1;
    out += "  ";
    out.append(text, start, end - start + 1);
    start = end + 1;
  }
  return out;
}

std::string bytes_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char buffer[32];
  if (unit == 0) {
    std::snprintf(buffer, sizeof buffer, "%.0f B", bytes);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.1f %s", bytes, units[unit]);
  }
  return buffer;
}

// mend's timestamps: "2026-11-28T18:40:00.120Z" (UTC).
std::optional<WallClock::time_point> parse_timestamp(std::string_view text) {
  auto number_at = [&](std::size_t pos, std::size_t len, int* out) {
    if (pos + len > text.size()) return false;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + len, *out);
    return ec == std::errc() && end == text.data() + pos + len;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || !number_at(0, 4, &year) || !number_at(5, 2, &month) ||
      !number_at(8, 2, &day) || !number_at(11, 2, &hour) || !number_at(14, 2, &minute) ||
      !number_at(17, 2, &second)) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  // Years past 2200 would overflow the clock's nanoseconds; mend writes none.
  if (year < 1970 || year > 2200) return std::nullopt;
  const std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  int millis = 0;
  if (text[19] == '.') number_at(20, 3, &millis);
  return WallClock::from_time_t(t) + std::chrono::milliseconds(millis);
}

double seconds_between(WallClock::time_point from, WallClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Percent-encodes one path segment.
std::string path_segment(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      char buffer[4];
      std::snprintf(buffer, sizeof buffer, "%%%02X", u);
      out += buffer;
    }
  }
  return out;
}

// "key   value" lines with the keys aligned.
std::string key_values(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, display_width(key));
  std::string out;
  for (const auto& [key, value] : rows) {
    out += key;
    out.append(width + 2 - display_width(key), ' ');
    out += printable(value);
    out += '\n';
  }
  return out;
}
}  // namespace mend::app
