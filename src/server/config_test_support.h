// Test support for the configuration tests (config_*_test.cc): a document parsed as if read from
// a file, its problems and warnings as `mend check-config` prints them, and small file helpers.
#ifndef MEND_SRC_SERVER_CONFIG_TEST_SUPPORT_H_
#define MEND_SRC_SERVER_CONFIG_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mend/server/config.h"
#include "mend_test/paths.h"

namespace mend::config_test_support {

inline constexpr const char* kBaseDir = "/srv/mend";
// One valid agent, for documents that test something else.
inline constexpr const char* kOneAgent = "agents:\n  - {name: a, url: \"http://127.0.0.1:9001\"}\n";

inline ConfigLoad parse(const std::string& yaml) {
  return parse_config(yaml, "test.yaml", kBaseDir);
}

// Each problem as `mend check-config` prints it after the file name: "line:col: key: message".
inline std::vector<std::string> problems(const ConfigLoad& load) {
  std::vector<std::string> out;
  for (ConfigProblem p : load.problems) {
    p.file.clear();
    out.push_back(p.to_string());
  }
  return out;
}

// Each warning as `mend check-config` prints it after "warning: " and the file name.
inline std::vector<std::string> warnings(const ConfigLoad& load) {
  std::vector<std::string> out;
  for (const std::string& w : load.warnings) {
    out.push_back(w.rfind("test.yaml:", 0) == 0 ? w.substr(10) : w);
  }
  return out;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

inline const std::string kSourceDir = testing::kSourceDir;

struct ProblemCase {
  std::string yaml;
  std::string expected;  // "line:col: key: message"
};

// Each case's YAML gives exactly one problem, the expected one. An expected text that ends in a
// space is a prefix: the rest varies with the build (the exception case lists registered names).
inline void expect_one_problem_each(const std::vector<ProblemCase>& cases) {
  for (const ProblemCase& c : cases) {
    SCOPED_TRACE(c.yaml);
    ConfigLoad load = parse(c.yaml);
    EXPECT_FALSE(load.ok());
    std::vector<std::string> found = problems(load);
    ASSERT_EQ(found.size(), 1u) << ::testing::PrintToString(found);
    EXPECT_EQ(found[0].substr(0, c.expected.size()), c.expected);
    if (c.expected.back() != ' ') {
      EXPECT_EQ(found[0], c.expected);
    }
  }
}

}  // namespace mend::config_test_support

#endif  // MEND_SRC_SERVER_CONFIG_TEST_SUPPORT_H_
