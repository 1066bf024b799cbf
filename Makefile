# The two commands of the README, plus a few conveniences. Every target installs what is missing
# (scripts/setup.sh, idempotent), configures with a CMake preset and builds with ccache.
JOBS ?= 2
CMAKE_BUILD = cmake --build --preset

.PHONY: all setup setup-test build demo test test-release test-asan test-tsan check bench fuzz soak format lint clean

all: build

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

build: setup
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS)

# The main job: `mend demo`, the specification's eight agents under mend with scripted chaos, a
# live view and a report (text, HTML, JSON). Builds only the two programs it runs.
demo: setup
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS) --target mend mend-sample-agent
	@build/release/src/app/mend demo $(DEMO_ARGS)

# The whole suite: every test in release, again under ASan+UBSan, and under TSan every test that
# runs threads (concurrency, store, runtime, end to end). docs/development.md says what each phase
# costs and why.
test: test-release test-asan test-tsan

test-release: setup-test
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS)
	@ctest --preset release

# The developer's inner loop: the release build and its tests, no sanitizers. `make check
# TESTS=regex` runs only the tests whose names match (ctest -R), with the fixtures they need.
check: setup-test
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS)
	@ctest --preset release $(if $(TESTS),-R "$$MEND_CHECK_TESTS")
check: export MEND_CHECK_TESTS = $(TESTS)

test-asan: setup-test
	@cmake --preset asan >/dev/null
	@$(CMAKE_BUILD) asan -j $(JOBS)
	@ctest --preset asan

# GCC 12 warns (-Wtsan, an error under MEND_WERROR) that TSan cannot model the
# atomic_thread_fence in Asio's handler recycling; the tsan preset turns that warning off. The tsan
# preset builds only the test programs it runs (MEND_TEST_LABELS).
test-tsan: setup-test
	@cmake --preset tsan >/dev/null
	@$(CMAKE_BUILD) tsan -j $(JOBS)
	@ctest --preset tsan

# Every comparison against the peers (docs/benchmarks.md); about 15 minutes after the build.
bench: setup
	@scripts/setup.sh bench
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS) --target mend mend-sample-agent mend_bench mend_scale_bench
	@python3 bench/all.py --build build/release --out build/release/bench/report.md

# Each fuzz target (fuzz/CMakeLists.txt) under libFuzzer with ASan+UBSan for SECONDS seconds (60 by
# default), starting from its corpus in fuzz/corpus; what it finds new goes to build/fuzz/found,
# crashes to build/fuzz/crashes; `make fuzz MERGE=1` then folds what is new into fuzz/corpus.
# `make test` replays the corpora without clang. (The preset declares Asio's C++20 coroutines,
# which Boost 1.74 does not detect under clang, and leaves out UBSan's `function` check, which
# clang 14 cannot emit for coroutines.)
SECONDS ?= 60
fuzz:
	@scripts/setup.sh fuzz
	@cmake --preset fuzz >/dev/null
	@$(CMAKE_BUILD) fuzz -j $(JOBS)
	@MERGE=$(MERGE) scripts/fuzz.sh build/fuzz $(SECONDS)

# mend serve under a steady mixed load, killed with SIGKILL and restarted every few seconds, for
# MINUTES minutes (10 by default): RSS and descriptors at the start, the plateau and the end, and
# the audit of every accepted task (scripts/soak.py, docs/reliability.md).
MINUTES ?= 10
soak: build
	@python3 scripts/soak.py --mend build/release/src/app/mend --minutes $(MINUTES)

# The C++ files git tracks, less those deleted in the working tree and not committed yet.
CXX_FILES = git ls-files '*.h' '*.cc' | while read -r f; do test -e "$$f" && echo "$$f"; done

format:
	@clang-format -i $$($(CXX_FILES))

# Fails on any C++ file that clang-format (Debian 12's, 14) would change; `make format` fixes them.
# Then clang's thread-safety analysis (clang++-14 -fsyntax-only -Wthread-safety) over each source
# under src/ that includes mend/core/thread_annotations.h, with the flags of the release
# configuration's compile_commands.json (scripts/thread_safety.py): fails on any access to a member
# MEND_GUARDED_BY a mutex not held. About two minutes with JOBS=2.
lint:
	@scripts/setup.sh lint
	@clang-format --dry-run -Werror $$($(CXX_FILES))
	@echo "lint: $$($(CXX_FILES) | wc -l) files as clang-format writes them"
	@cmake --preset release >/dev/null
	@python3 scripts/thread_safety.py --build build/release --jobs $(JOBS)

clean:
	rm -rf build
