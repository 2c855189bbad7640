#!/bin/sh
# test-arm.sh [OUT_DIR]: builds the matmul kernel test (tests/test_matmul.c with the engine) for
# AArch64 with Debian's cross compiler and runs it under qemu-user, so that the NEON kernels
# (engine/arm/neon.c) are checked against their scalar twins on an x86-64 machine. The meson
# suite runs it as `neon_kernels`. Exit 77 (meson's "skipped") when the cross compiler or qemu
# is missing (scripts/setup.sh installs both) or when this machine is AArch64 itself, where the
# native test_matmul already runs the NEON kernels.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
cc=aarch64-linux-gnu-gcc
qemu=qemu-aarch64
if [ "$(uname -m)" = aarch64 ]; then
    echo "SKIP: native AArch64 (test_matmul covers the NEON kernels)"
    exit 77
fi
if ! command -v "$cc" >/dev/null 2>&1 || ! command -v "$qemu" >/dev/null 2>&1; then
    echo "SKIP: $cc or $qemu not installed"
    exit 77
fi
out=${1:-$(mktemp -d)}
mkdir -p "$out"
# the engine's warning flags, as errors: this is the only build of the NEON code. The engine goes
# into an archive so that only what the test uses is linked: tokenizer_bpe.c needs PCRE2, which
# is not installed for AArch64 here (and the matrix test has no tokenizer).
flags="-std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -ffp-contract=off -I$src/engine -I$src/tests"
rm -f "$out/libengine_aarch64.a"
for f in "$src"/engine/*.c "$src"/engine/x86/*.c "$src"/engine/arm/*.c; do
    [ "$(basename "$f")" = tokenizer_bpe.c ] && continue
    o="$out/$(basename "$(dirname "$f")")_$(basename "$f" .c).o"
    "$cc" $flags -c "$f" -o "$o"
    aarch64-linux-gnu-ar rcs "$out/libengine_aarch64.a" "$o"
done
"$cc" $flags "$src/tests/test_matmul.c" "$out/libengine_aarch64.a" -lm -lpthread \
    -o "$out/test_matmul_aarch64"
# The test itself takes 10-30 s under qemu. Once in a CI run (2026-11-29) qemu-user sat with
# no output until meson killed it at 300 s, and six reruns at once ran normally: qemu-user's
# multithreaded guests can hang. So a run that exceeds 240 s is reported and retried once; a
# second hang, or any failed check, fails the test. test_matmul's output is line-buffered, so a
# hang shows the last check that ran.
run() {
    QEMU_LD_PREFIX=/usr/aarch64-linux-gnu timeout -k 5 240 "$qemu" \
        "$out/test_matmul_aarch64"
}
rc=0
run || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "test-arm.sh: qemu-user ran past 240 s (hung); running it once more"
    rc=0
    run || rc=$?
fi
exit "$rc"
