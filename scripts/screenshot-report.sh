#!/usr/bin/env bash
# Screenshots the HTML report of `mend demo` with headless Chromium (Debian's chromium package,
# which scripts/setup.sh installs), for docs/.
# Usage: scripts/screenshot-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]   (default 1280x2200)
# The browser is $MEND_CHROMIUM, else chromium, chromium-browser or google-chrome on PATH.
set -euo pipefail

if (($# < 2 || $# > 3)); then
  echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
fi
report=$1
out=$2
size=${3:-1280x2200}
if [[ ! -f $report ]]; then
  echo "$0: no such report: $report" >&2
  exit 1
fi
if [[ ! $size =~ ^[0-9]+x[0-9]+$ ]]; then
  echo "$0: size must be WIDTHxHEIGHT, not '$size'" >&2
  exit 2
fi

browser=${MEND_CHROMIUM:-}
if [[ -z $browser ]]; then
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
      browser=$(command -v "$name")
      break
    fi
  done
fi
if [[ -z $browser || ! -x $browser ]]; then
  echo "$0: headless Chromium not found; scripts/setup.sh installs Debian's chromium package" >&2
  exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mend-screenshot-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
report_path=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
out_path=$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)/$(basename "$out")
rm -f "$out_path"

# stderr to a file: Chromium complains about D-Bus, harmlessly; shown only on failure.
if ! timeout --kill-after=5 60 "$browser" --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --no-first-run --no-default-browser-check --disable-extensions \
    --disable-background-networking --disable-crash-reporter --disable-breakpad \
    --user-data-dir="$scratch/profile" --virtual-time-budget=5000 --hide-scrollbars \
    --window-size="${size/x/,}" --screenshot="$out_path" "file://$report_path" \
    >"$scratch/stdout" 2>"$scratch/stderr" || [[ ! -s $out_path ]]; then
  echo "$0: chromium failed; its stderr ends with:" >&2
  tail -n 20 "$scratch/stderr" >&2
  exit 1
fi
echo "$out_path ($size, $(stat -c %s "$out_path") bytes)"
