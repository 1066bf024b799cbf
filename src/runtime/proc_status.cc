// Reading /proc (proc_status.h): a supervised process's resident memory.
#include "proc_status.h"

#include <cstdio>
#include <string>

namespace mend::runtime_detail {

std::uint64_t read_rss_bytes(int pid) {
  const std::string file = "/proc/" + std::to_string(pid) + "/status";
  std::FILE* f = std::fopen(file.c_str(), "re");
  if (f == nullptr) return 0;
  std::uint64_t bytes = 0;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long kib = 0;
    if (std::sscanf(line, "VmRSS: %llu kB", &kib) == 1) {
      bytes = static_cast<std::uint64_t>(kib) * 1024;
      break;
    }
  }
  std::fclose(f);
  return bytes;
}

}  // namespace mend::runtime_detail
