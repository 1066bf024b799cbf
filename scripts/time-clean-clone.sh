#!/usr/bin/env bash
# Times `make test` phase by phase on a fresh clone: the figures of docs/development.md.
#
# Usage: scripts/time-clean-clone.sh [--ref REF] [--ccache DIR] [--keep] OUT_DIR
#   --ref REF     the commit to clone (default HEAD; uncommitted work is not included)
#   --ccache DIR  the ccache directory to build with (default: a new, empty one, removed at the
#                 end = a cold build); give the same DIR to a second run for a warm build from
#                 another folder
#   --keep        keep the clone (default: removed at the end)
#   OUT_DIR       where the results go: phases.tsv (phase, seconds), junit-PRESET.xml (every
#                 test's time), slowest-PRESET.txt (the ten slowest), ccache-PRESET.txt,
#                 ninja-log-PRESET.txt (every compile's time), log.txt
#
# The phases are the commands `make test` runs, in its order: scripts/setup.sh test, then for each
# preset (release, asan, tsan) `cmake --preset`, `cmake --build --preset` and `ctest --preset`.
# Nothing is run in parallel with another phase, so that the figures add up to make test's own.
set -euo pipefail

ref=HEAD
ccache_dir=""
keep=0
while (($#)); do
  case "$1" in
    --ref) ref=$2; shift 2 ;;
    --ccache) ccache_dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "time-clean-clone: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
(($# == 1)) || { echo "usage: scripts/time-clean-clone.sh [--ref REF] [--ccache DIR] [--keep] OUT_DIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
sha=$(git -C "$top" rev-parse "$ref")

own_ccache=""
if [[ -z "$ccache_dir" ]]; then
  ccache_dir=$(mktemp -d /tmp/mend-ccache.XXXXXX)
  own_ccache=$ccache_dir
fi
mkdir -p "$ccache_dir"
export CCACHE_DIR=$(cd "$ccache_dir" && pwd)
clone=$(mktemp -d /tmp/mend-clone.XXXXXX)/mend
cleanup() {
  if ((keep == 0)); then rm -rf "$(dirname "$clone")"; fi
  if [[ -n "$own_ccache" ]]; then rm -rf "$own_ccache"; fi
}
trap cleanup EXIT
git clone -q "$top" "$clone"
git -C "$clone" checkout -q "$sha"

: >"$out/phases.tsv"
: >"$out/counts.txt"
log=$out/log.txt
: >"$log"
echo "clone of ${sha:0:9} in $clone, CCACHE_DIR=$CCACHE_DIR ($(du -sh "$CCACHE_DIR" | cut -f1) before)" | tee -a "$log"

phase() {
  local name=$1
  shift
  local start=$SECONDS
  echo "== $name: $*" >>"$log"
  if ! (cd "$clone" && "$@") >>"$log" 2>&1; then
    echo "time-clean-clone: phase '$name' failed; see $log" >&2
    printf '%s\t%s\tFAILED\n' "$name" $((SECONDS - start)) >>"$out/phases.tsv"
    exit 1
  fi
  printf '%s\t%s\n' "$name" $((SECONDS - start)) | tee -a "$out/phases.tsv"
}

total_start=$SECONDS
phase setup scripts/setup.sh test
for preset in release asan tsan; do
  ccache -z >/dev/null 2>&1 || true
  phase "configure $preset" cmake --preset "$preset"
  phase "build $preset" cmake --build --preset "$preset"
  ccache -s >"$out/ccache-$preset.txt" 2>&1 || true
  cp "$clone/build/$preset/.ninja_log" "$out/ninja-log-$preset.txt"
  phase "test $preset" ctest --preset "$preset" --output-junit "$out/junit-$preset.xml"
  grep -E 'tests passed|tests failed' "$log" | tail -n 1 | sed "s/^/$preset: /" >>"$out/counts.txt"
  python3 - "$out/junit-$preset.xml" >"$out/slowest-$preset.txt" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = [(float(c.get("time", 0)), c.get("name")) for c in ET.parse(sys.argv[1]).iter("testcase")]
for t, name in sorted(cases, reverse=True)[:10]:
    print(f"{t:8.1f} s  {name}")
print(f"{sum(t for t, _ in cases):8.1f} s  sum of {len(cases)} tests")
PY
done
printf 'total\t%s\n' $((SECONDS - total_start)) | tee -a "$out/phases.tsv"
cat "$out/counts.txt"
echo "ccache after: $(du -sh "$CCACHE_DIR" | cut -f1)" | tee -a "$log"
