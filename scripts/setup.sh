#!/usr/bin/env bash
# setup.sh: installs what llamaserve needs to BUILD (Debian packages, only those missing), then
# configures a release build in build/ and builds the program. Needs nothing outside this
# repository. The test-only packages (numpy, sentencepiece, the AArch64 cross compiler, qemu,
# podman, nginx, npm packages) are installed by scripts/test.sh when it first runs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc libc6-dev meson ninja-build pkg-config libmicrohttpd-dev libcjson-dev libpcre2-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -f build/build.ninja ]; then
    meson setup --reconfigure build --buildtype=release >/dev/null
else
    meson setup build --buildtype=release
fi
ninja -C build
echo "setup: built build/llamaserve"
