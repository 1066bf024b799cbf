// Test support for the daemon's tests of tests/serve (serve_*_test.cc): reading a task's answer.
#ifndef MEND_TESTS_SERVE_SERVE_TEST_SUPPORT_H_
#define MEND_TESTS_SERVE_SERVE_TEST_SUPPORT_H_

#include <string>

#include "serve_fixture.h"

namespace mend::testing::serve_test_support {

inline std::string outcome_status(const Reply& r) {
  return r.body["outcome"]["status"].get<std::string>();
}

}  // namespace mend::testing::serve_test_support

#endif  // MEND_TESTS_SERVE_SERVE_TEST_SUPPORT_H_
