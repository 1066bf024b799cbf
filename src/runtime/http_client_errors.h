// Internal to mend::runtime: how the HTTP client reports what the caller got wrong (a bad URL,
// method, header or ca_file), shared by http_client.cc and http_url.cc (parse_url).
#ifndef MEND_SRC_RUNTIME_HTTP_CLIENT_ERRORS_H_
#define MEND_SRC_RUNTIME_HTTP_CLIENT_ERRORS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "mend/core/error.h"

namespace mend::runtime_detail {

// An error of kind "configuration": what the caller gave cannot be used.
inline Error configuration_error(std::string message) {
  return Error::of_kind("configuration", std::move(message));
}

// What may be quoted back in an error message: bounded, and without control characters.
inline std::string printable(std::string_view text) {
  constexpr std::size_t kMax = 200;
  std::string out;
  for (char c : text.substr(0, kMax)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  if (text.size() > kMax) out += "...";
  return out;
}

}  // namespace mend::runtime_detail

#endif  // MEND_SRC_RUNTIME_HTTP_CLIENT_ERRORS_H_
