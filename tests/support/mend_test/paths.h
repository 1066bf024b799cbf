// Test support: where this build's `mend` and `mend-sample-agent` are, and the source tree, as
// absolute paths. Defined in a file the build generates (cmake/MendTesting.cmake); a test program
// declared with PROGRAMS links it.
#ifndef MEND_TESTS_SUPPORT_PATHS_H_
#define MEND_TESTS_SUPPORT_PATHS_H_

namespace mend::testing {

extern const char* const kMendBinary;         // build/PRESET/src/app/mend
extern const char* const kSampleAgentBinary;  // build/PRESET/examples/agent/mend-sample-agent
extern const char* const kSourceDir;          // the checkout (examples/, tests/serve/data/)

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_PATHS_H_
