#!/usr/bin/env bash
# setup.sh: installs what llamaserve needs to build and test (Debian packages, only those
# missing), then configures a release build in build/ and builds it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc libc6-dev meson ninja-build pkg-config libmicrohttpd-dev libcjson-dev
          python3 python3-numpy python3-sentencepiece curl)
# the AArch64 NEON kernels are tested on x86-64 with a cross compiler and qemu-user
# (scripts/test-arm.sh); on AArch64 the native tests cover them
if [ "$(uname -m)" = x86_64 ]; then
    packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi
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

# the Node test drives the server with the official openai package (pinned by package-lock.json);
# without Node.js that one test is skipped
if command -v npm >/dev/null 2>&1; then
    if [ ! -d tests/node/node_modules/openai ]; then
        npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
    fi
else
    echo "setup: npm not found: the Node client test will be skipped"
fi

if [ -f build/build.ninja ]; then
    meson setup --reconfigure build --buildtype=release >/dev/null
else
    meson setup build --buildtype=release
fi
ninja -C build
echo "setup: built build/llamaserve"
