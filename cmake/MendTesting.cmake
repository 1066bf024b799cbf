# How mend's test programs are declared: one function, so that every test program gets the same
# libraries, support headers and ctest labels, and so that a configuration can leave out the
# programs it does not run.
#
#   mend_add_test_program(mend_store_tests LABEL store
#     SOURCES escalator_test.cc journal_test.cc
#     LIBRARIES mend::store SQLite::SQLite3)
#
# LABEL      the ctest label of every test in the program (the TSan run selects by label)
# SOURCES    the program's sources; GoogleTest's main is linked unless NO_MAIN
# LIBRARIES  what it links besides GoogleTest, GoogleMock and nlohmann-json
# INCLUDES   include directories besides tests/support
# PROPERTIES further ctest properties of its tests (ENVIRONMENT, FIXTURES_REQUIRED, ...)
# PATHS      it links mend_test_paths (mend_test/paths.h): where `mend`, `mend-sample-agent` and
#            the source tree are
# PROGRAMS   it runs `mend` and `mend-sample-agent`: PATHS, and they are built first
# ONE_PROCESS a --gtest_filter of tests that run together as one ctest test, in one process, so
#            that what they share is started once per program (the store tests' throwaway
#            PostgreSQL server); the program's other tests are one ctest test each, as usual
#
# MEND_TEST_LABELS (a regular expression; empty: every label) keeps only the programs whose label
# matches: the TSan configuration builds and runs only the programs that run threads or processes,
# and compiles nothing it would not run.
set(MEND_TEST_LABELS "" CACHE STRING
    "Only test programs whose label matches this regular expression (empty: all)")

function(mend_test_label_wanted label out)
  if(MEND_TEST_LABELS STREQUAL "" OR label MATCHES "^(${MEND_TEST_LABELS})$")
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# Every test program compiles with one precompiled header, made once per configuration by
# mend_test_prelude: GoogleTest, GoogleMock, nlohmann-json, Asio and the standard headers the tests
# share, which a test source otherwise spends about two seconds of its compile parsing. Only
# headers from outside the project go in (a project header in it would make every test depend on
# it). For one header to serve all, every test program has the same definitions: those Asio and
# Beast take from mend::runtime, and Boost's.
function(mend_add_test_prelude)
  set(source ${PROJECT_BINARY_DIR}/tests/support/mend_test_prelude.cc)
  file(GENERATE OUTPUT ${source} CONTENT "// The precompiled header's own object (cmake/MendTesting.cmake).\n")
  add_library(mend_test_prelude OBJECT ${source})
  target_link_libraries(mend_test_prelude PUBLIC mend_warnings nlohmann_json::nlohmann_json
                        GTest::gtest GTest::gmock Boost::headers)
  target_compile_definitions(mend_test_prelude PUBLIC BOOST_ASIO_NO_DEPRECATED
                             BOOST_BEAST_USE_STD_STRING_VIEW)
  target_precompile_headers(mend_test_prelude PRIVATE
    # Before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it.
    <utility>
    <algorithm> <atomic> <chrono> <cstdint> <filesystem> <fstream> <functional> <map> <memory>
    <mutex> <optional> <set> <sstream> <stdexcept> <string> <thread> <vector>
    <gmock/gmock.h> <gtest/gtest.h> <nlohmann/json.hpp>
    <boost/asio/co_spawn.hpp> <boost/asio/executor_work_guard.hpp> <boost/asio/io_context.hpp>
    <boost/asio/use_awaitable.hpp> <boost/asio/use_future.hpp>)
endfunction()

function(mend_add_test_program name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "PATHS;PROGRAMS;NO_MAIN" "LABEL;ONE_PROCESS"
                        "SOURCES;LIBRARIES;INCLUDES;PROPERTIES")
  if(NOT arg_LABEL OR NOT arg_SOURCES)
    message(FATAL_ERROR "mend_add_test_program(${name}): LABEL and SOURCES are required")
  endif()
  mend_test_label_wanted(${arg_LABEL} wanted)
  if(NOT wanted)
    return()
  endif()
  mend_unity_sources(sources ${name} ${arg_SOURCES})
  add_executable(${name} ${sources})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support ${arg_INCLUDES})
  target_link_libraries(${name} PRIVATE ${arg_LIBRARIES} mend_test_prelude)
  target_precompile_headers(${name} REUSE_FROM mend_test_prelude)
  if(NOT arg_NO_MAIN)
    target_link_libraries(${name} PRIVATE GTest::gtest_main)
  endif()
  if(arg_PATHS OR arg_PROGRAMS)
    target_link_libraries(${name} PRIVATE mend_test_paths)
  endif()
  if(arg_PROGRAMS)
    add_dependencies(${name} mend mend-sample-agent)
  endif()
  if(arg_ONE_PROCESS)
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 TEST_FILTER "-${arg_ONE_PROCESS}"
                         PROPERTIES LABELS ${arg_LABEL} ${arg_PROPERTIES})
    add_test(NAME ${name}.one_process COMMAND ${name} "--gtest_filter=${arg_ONE_PROCESS}")
    set_tests_properties(${name}.one_process PROPERTIES LABELS ${arg_LABEL}
                         SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]" ${arg_PROPERTIES})
  else()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
                         PROPERTIES LABELS ${arg_LABEL} ${arg_PROPERTIES})
  endif()
endfunction()

# Where the test programs find mend, the sample agent and the source tree. The paths are absolute
# and differ from one checkout to the next; they live in this one generated file (compiled in a
# moment), not in -D flags on the tests' own sources, so that ccache serves those sources from a
# build made in another folder.
function(mend_add_test_paths_library)
  # One file per configuration: a multi-configuration generator has one build of mend per config.
  set(source ${PROJECT_BINARY_DIR}/tests/support/mend_test_paths_$<CONFIG>.cc)
  file(GENERATE OUTPUT ${source} CONTENT
"// Generated by cmake/MendTesting.cmake: where this build's programs and its sources are.
#include \"mend_test/paths.h\"

namespace mend::testing {
const char* const kMendBinary = \"$<TARGET_FILE:mend>\";
const char* const kSampleAgentBinary = \"$<TARGET_FILE:mend-sample-agent>\";
const char* const kSourceDir = \"${PROJECT_SOURCE_DIR}\";
}  // namespace mend::testing
")
  add_library(mend_test_paths STATIC ${source})
  target_include_directories(mend_test_paths PUBLIC ${PROJECT_SOURCE_DIR}/tests/support)
endfunction()
