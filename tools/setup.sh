#!/usr/bin/env bash
# Installs what moe-sim needs on Debian/Ubuntu (only what is missing), then configures and builds
# the release preset. Idempotent: with everything present it installs nothing.
#   tools/setup.sh            # install + build
#   tools/setup.sh --no-build # install only
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake libeigen3-dev libyaml-cpp-dev libcli11-dev libfmt-dev doctest-dev
          clang-format python3 python3-pandas python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

[ "${1:-}" = "--no-build" ] && exit 0
cmake --preset release
cmake --build --preset release -j "$(nproc)"
echo "setup: built build/release/moe-sim"
