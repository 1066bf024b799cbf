#!/usr/bin/env bash
# Installs the Debian packages mend needs to build and test, and only those that are missing.
# Idempotent: a second run installs nothing and does not touch apt's lists.
# Usage: scripts/setup.sh [test|bench|fuzz|lint]
#   (no argument) what building mend and running `mend demo` need;
#   test          also what the test suite needs: Chromium, which renders the demo's HTML report,
#                 and PostgreSQL 15, whose binaries the store tests start a throwaway server with
#                 (initdb in a temporary directory; the package's own service is not used);
#   bench         also the peers `make bench` measures mend against: HAProxy, nginx, wrk, tenacity
#                 (Debian), cockatiel and opossum (npm, pinned in bench/node/package-lock.json);
#   fuzz          also clang, whose libFuzzer `make fuzz` runs the fuzz targets with;
#   lint          also clang-format and clang 14, which `make lint` checks the code with (format,
#                 thread-safety analysis), and python3, which runs the analysis.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache mold pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev libssl-dev libsqlite3-dev libpq-dev nlohmann-json3-dev openssl
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
)
if [[ "${1:-}" == "test" ]]; then
  packages+=(chromium fonts-dejavu-core postgresql-15)
fi
if [[ "${1:-}" == "fuzz" ]]; then
  packages+=(clang)
fi
if [[ "${1:-}" == "lint" ]]; then
  packages+=(clang-format clang-14 python3)
fi
if [[ "${1:-}" == "bench" ]]; then
  packages+=(haproxy nginx wrk python3-tenacity)
  # Node.js and npm run the npm peers; a machine that has them from elsewhere keeps its own
  # (Debian's npm would conflict with a NodeSource nodejs).
  if ! command -v node >/dev/null; then
    packages+=(nodejs npm)
  elif ! command -v npm >/dev/null; then
    echo "setup: node is installed but npm is not: install npm with the same source as node" >&2
    exit 1
  fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing missing packages: ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm peers, exactly the versions of the lock file; again only when they are missing.
if [[ "${1:-}" == "bench" ]]; then
  node_dir="$(dirname "$0")/../bench/node"
  # opossum 9 supports Node.js 20 and later; Debian 12's own nodejs is 18.
  if (( $(node -p 'process.versions.node.split(".")[0]') < 20 )); then
    echo "setup: warning: node $(node --version) is older than 20, which opossum 9 supports" >&2
  fi
  if [[ ! -f "$node_dir/node_modules/.package-lock.json" ||
        "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]]; then
    echo "setup: installing the npm peers (npm ci --prefix bench/node)"
    npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
  fi
fi
