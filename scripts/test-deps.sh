#!/usr/bin/env bash
# test-deps.sh: installs what the TESTS need beyond the build (scripts/setup.sh): Debian packages,
# only those missing, and the pinned npm packages of tests/node. scripts/test.sh runs it first;
# none of this is needed to build or run llamaserve. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3 python3-numpy python3-sentencepiece curl nginx)
# the JSON Schema corpus (tests/test_server_grammar.py) is checked by an independent validator
packages+=(python3-jsonschema)
# python3-jinja2 renders the chat templates' reference output (tests/reference/render_templates.py)
packages+=(python3-jinja2)
# the AArch64 NEON kernels are tested on x86-64 with a cross compiler and qemu-user
# (scripts/test-arm.sh); on AArch64 the native tests cover them
if [ "$(uname -m)" = x86_64 ]; then
    packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi
# the chat page is tested in a real browser (tests/test_webui.py drives it with puppeteer-core)
packages+=(chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-deps: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# the Node tests drive the server with real clients (openai, LangChain, the AI SDK) and the chat page with
# puppeteer-core, which drives the Debian chromium above and never downloads a browser of its own
# (pinned by package-lock.json); without Node.js those tests are skipped
if command -v npm >/dev/null 2>&1; then
    if [ ! -f tests/node/node_modules/.package-lock.json ] ||
        [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
        PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
    fi
else
    echo "test-deps: npm not found: the Node client tests will be skipped"
fi
