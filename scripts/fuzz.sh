#!/usr/bin/env bash
# Runs every fuzz target of a `fuzz` build (make fuzz) under libFuzzer for SECONDS seconds each,
# from its corpus in fuzz/corpus/<name> (read only: what is new goes to BUILD/found/<name>),
# crashes to BUILD/crashes/<name>. Prints, per target, the executions and what was found.
# With MERGE=1 (make fuzz MERGE=1), the corpus in the repository is then replaced by the smallest
# set of its inputs and the new ones that covers as much (libFuzzer's -merge=1): commit that.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS
set -uo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
targets=(config agent_response api_server http_client event_stream)
status=0
printf '%-16s %12s %10s %8s  %s\n' target executions 'exec/s' crashes 'new inputs'
for name in "${targets[@]}"; do
  program="$build/fuzz/mend_fuzz_$name"
  found="$build/found/$name"
  crashes="$build/crashes/$name"
  mkdir -p "$found" "$crashes"
  log="$build/fuzz-$name.log"
  before=$(ls "$found" | wc -l)
  # -timeout: one input may take at most 10 s (the daemon's target reads for 300 ms at most).
  "$program" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$found" "$root/fuzz/corpus/$name" >"$log" 2>&1
  result=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'exec/s: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  after=$(ls "$found" | wc -l)
  crashed=$(ls "$crashes" | wc -l)
  printf '%-16s %12s %10s %8s  %s\n' "$name" "${runs:-?}" "${rate:-?}" "$crashed" "$((after - before))"
  if [[ "${MERGE:-0}" == 1 && $result -eq 0 ]]; then
    merged=$(mktemp -d)
    "$program" -merge=1 -timeout=10 "$merged" "$root/fuzz/corpus/$name" "$found" >>"$log" 2>&1 &&
      rm -rf "$root/fuzz/corpus/$name" && mv "$merged" "$root/fuzz/corpus/$name" &&
      echo "  $name: corpus merged: $(ls "$root/fuzz/corpus/$name" | wc -l) inputs"
  fi
  if [[ $result -ne 0 || $crashed -gt 0 ]]; then
    echo "  $name: libFuzzer exited $result; see $log and $crashes" >&2
    status=1
  fi
done
exit $status
