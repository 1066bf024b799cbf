// The checks the relay's framing (relay_framing.h) runs on a request's target: which targets it
// refuses to pass on, and which reach an agent's admin hooks.
#include "relay_framing.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>
#include <string_view>

#include "mend/core/text.h"

namespace mend::server_detail {

std::string unsafe_target_reason(std::string_view target) {
  if (target.empty() || target.front() != '/') {
    return "the relay takes origin-form targets only (\"/path?query\"), not \"" +
           std::string(target.substr(0, 64)) + "\"";
  }
  const std::string_view path = target.substr(0, target.find_first_of("?#"));
  const std::string lower = ascii_lower(path);
  if (lower.find('\\') != std::string::npos || lower.find("%2f") != std::string::npos ||
      lower.find("%5c") != std::string::npos || lower.find("%2e") != std::string::npos) {
    return "the request path has an encoded '/', '\\' or '.', or a backslash";
  }
  for (std::size_t start = 0; start <= lower.size();) {
    const std::size_t end = std::min(lower.find('/', start), lower.size());
    const std::string_view segment = std::string_view(lower).substr(start, end - start);
    if (segment == "." || segment == "..") return "the request path has a '.' or '..' segment";
    start = end + 1;
  }
  return "";
}

bool is_admin_target(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  while (!target.empty() && target.front() == '/') target.remove_prefix(1);
  std::string segment;
  for (std::size_t i = 0; i < target.size() && segment.size() <= 5; ++i) {
    char c = target[i];
    if (c == '/' || c == ';') break;
    if (c == '%' && i + 2 < target.size()) {
      int value = 0;
      auto [end, err] = std::from_chars(target.data() + i + 1, target.data() + i + 3, value, 16);
      if (err == std::errc() && end == target.data() + i + 3) {
        c = static_cast<char>(value);
        i += 2;
      }
    }
    segment.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return segment == "admin";
}

}  // namespace mend::server_detail
