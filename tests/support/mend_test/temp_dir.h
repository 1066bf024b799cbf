// Test support: a fresh directory under the system's temporary directory, removed with
// everything in it when the object goes. mkdtemp() makes the name unique across processes (ctest
// runs test binaries in parallel) and threads.
#ifndef MEND_TESTS_SUPPORT_TEMP_DIR_H_
#define MEND_TESTS_SUPPORT_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace mend::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "mend-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_TEMP_DIR_H_
