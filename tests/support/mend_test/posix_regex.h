// Test support: regular expressions through POSIX <regex.h> (extended syntax) rather than
// std::regex, whose GCC 12 implementation trips -Wmaybe-uninitialized (an error here) when
// built with -O1 and the sanitizers.
//
//   std::optional<std::vector<std::string>> m = regex_search(text, "valid \\(([0-9]+) agents");
//   if (m) use((*m)[1]);        // [0] the whole match, then each group
//   regex_full_match(line, "[0-9]+ tasks")   // the whole line must match
#ifndef MEND_TESTS_SUPPORT_POSIX_REGEX_H_
#define MEND_TESTS_SUPPORT_POSIX_REGEX_H_

#include <regex.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mend::testing {

// The first match of `pattern` (POSIX extended) in `text`: the match and its groups (an
// unmatched group is ""), or nullopt. Throws std::invalid_argument for a bad pattern.
inline std::optional<std::vector<std::string>> regex_search(const std::string& text,
                                                            const std::string& pattern) {
  regex_t compiled;
  if (::regcomp(&compiled, pattern.c_str(), REG_EXTENDED) != 0) {
    throw std::invalid_argument("bad regular expression: " + pattern);
  }
  std::vector<regmatch_t> groups(compiled.re_nsub + 1);
  const int found = ::regexec(&compiled, text.c_str(), groups.size(), groups.data(), 0);
  ::regfree(&compiled);
  if (found != 0) return std::nullopt;
  std::vector<std::string> out;
  for (const regmatch_t& g : groups) {
    out.push_back(g.rm_so < 0 ? std::string()
                              : text.substr(static_cast<std::size_t>(g.rm_so),
                                            static_cast<std::size_t>(g.rm_eo - g.rm_so)));
  }
  return out;
}

// The same, when `pattern` matches the whole of `text`.
inline std::optional<std::vector<std::string>> regex_full_match(const std::string& text,
                                                                const std::string& pattern) {
  std::optional<std::vector<std::string>> m = regex_search(text, "^(" + pattern + ")$");
  if (m) m->erase(m->begin() + 1);  // the group the anchors added
  return m;
}

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_POSIX_REGEX_H_
