# The two commands of the README, plus a few conveniences. Every target installs what is missing
# (scripts/setup.sh, idempotent), configures with a CMake preset and builds with ccache.
JOBS ?= 2
CMAKE_BUILD = cmake --build --preset

.PHONY: all setup build demo test test-release test-asan test-tsan bench format clean

all: build

setup:
	@scripts/setup.sh

build: setup
	@cmake --preset release >/dev/null
	@$(CMAKE_BUILD) release -j $(JOBS)

# The main job: a few hundred simulated tasks with injected failures pushed through the policies.
demo: build
	@build/release/examples/policy_demo

# The whole suite: every test in release, again under ASan+UBSan, and under TSan every test that
# runs threads (concurrency, store, runtime, end to end).
test: test-release test-asan test-tsan

test-release: build
	@ctest --preset release

test-asan: setup
	@cmake --preset asan >/dev/null
	@$(CMAKE_BUILD) asan -j $(JOBS)
	@ctest --preset asan

# GCC 12 warns (-Wtsan, an error under MEND_WERROR) that TSan cannot model the
# atomic_thread_fence in Asio's handler recycling; the tsan preset turns that warning off.
test-tsan: setup
	@cmake --preset tsan >/dev/null
	@$(CMAKE_BUILD) tsan -j $(JOBS)
	@ctest --preset tsan

bench: build
	@python3 bench/compare.py 10 build/release/bench/mend_bench

format:
	@clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf build
