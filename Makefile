# The two commands of the README, plus a few conveniences. Every target installs what is missing
# (scripts/setup.sh, idempotent), configures with a CMake preset and builds with ccache.
JOBS ?= 2
CMAKE_BUILD = cmake --build --preset

.PHONY: all setup setup-test build demo test test-release test-asan test-tsan check bench format clean

all: build

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

build: setup
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS)

# The main job: `mend demo`, the seed's eight agents under mend with scripted chaos, a live view and
# a report (text, HTML, JSON). Builds only the two programs it runs.
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

format:
	@clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf build
