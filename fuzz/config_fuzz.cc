// Fuzz target: the configuration loader (YAML, every section reader, the duration, size and URL
// parsers). Any input must give a configuration or a list of problems, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mend/runtime/http_client.h"
#include "mend/server/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  mend::ConfigLoad load = mend::parse_config(text, "fuzz.yaml", "/nonexistent-fuzz-dir");
  if (!load.ok() && load.problems.empty()) __builtin_trap();  // invalid must say why
  for (const mend::ConfigProblem& p : load.problems) (void)p.to_string();
  (void)mend::parse_duration(text);
  (void)mend::parse_size(text);
  (void)mend::parse_url(text);
  return 0;
}
