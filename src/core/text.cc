#include "mend/core/text.h"

#include <cstdio>
#include <optional>
#include <sstream>

namespace mend {

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string duration_text(Duration d) {
  using namespace std::chrono;
  auto exact = [&](auto unit, const char* suffix) -> std::optional<std::string> {
    if (d.count() % Duration(unit).count() != 0) return std::nullopt;
    return std::to_string(d.count() / Duration(unit).count()) + suffix;
  };
  if (d == Duration::zero()) return "0s";
  if (auto s = exact(hours(24), "d")) return *s;
  if (auto s = exact(hours(1), "h")) return *s;
  if (auto s = exact(minutes(1), "m")) return *s;
  if (auto s = exact(seconds(1), "s")) return *s;
  if (auto s = exact(milliseconds(1), "ms")) return *s;
  std::ostringstream out;
  out << to_seconds(d) << "s";
  return out.str();
}

std::string seconds_text(double seconds) {
  char buffer[32];
  if (seconds < 0.001) {
    std::snprintf(buffer, sizeof buffer, "%.1f ms", seconds * 1000);
  } else if (seconds < 1) {
    std::snprintf(buffer, sizeof buffer, "%.0f ms", seconds * 1000);
  } else if (seconds < 10) {
    std::snprintf(buffer, sizeof buffer, "%.2f s", seconds);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.1f s", seconds);
  }
  return buffer;
}

}  // namespace mend
