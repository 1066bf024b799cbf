#!/usr/bin/env bash
# Installs the Debian packages mend needs to build and test, and only those that are missing.
# Idempotent: a second run installs nothing and does not touch apt's lists.
# Usage: scripts/setup.sh [test]
#   (no argument) what building mend and running `mend demo` need;
#   test          also what the test suite needs: Chromium, which renders the demo's HTML report.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev libssl-dev libsqlite3-dev nlohmann-json3-dev openssl
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
)
if [[ "${1:-}" == "test" ]]; then
  packages+=(chromium fonts-dejavu-core)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing missing packages: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
