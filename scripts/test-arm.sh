#!/usr/bin/env bash
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
# The test itself takes 30-50 s under qemu alone, with at most 7 s between two lines of its
# output (line-buffered), and 90-100 s beside the rest of the suite. qemu-user's multithreaded
# guests can hang: twice (CI on 2026-11-29, a local .ci/run on 2026-12-02) it sat with no output
# after its first line, and a rerun ran normally. So a run that prints nothing for 60 s is
# reported, killed and run once more; a second hang, or any failed check, fails the test, and the
# last line shown is the last check that ran.
quiet=${TEST_ARM_QUIET_S:-60} # seconds; the variable is for testing this script
run() {
    local pid fd line rc
    # the guest's output on fd (a process substitution: unlike a coprocess's, the descriptor
    # stays open after the guest exits, until its last lines are read)
    exec {fd}< <(QEMU_LD_PREFIX=/usr/aarch64-linux-gnu exec "$qemu" \
        "$out/test_matmul_aarch64" 2>&1)
    pid=$!
    while true; do
        rc=0
        IFS= read -r -t "$quiet" line <&"$fd" || rc=$?
        if [ "$rc" -eq 0 ]; then
            printf '%s\n' "$line"
        elif [ "$rc" -gt 128 ]; then
            echo "test-arm.sh: no output from qemu-user for $quiet s (hung)"
            kill -9 "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            exec {fd}<&-
            return 124
        else
            [ -n "$line" ] && printf '%s\n' "$line"
            break
        fi
    done
    exec {fd}<&-
    wait "$pid"
}
rc=0
run || rc=$?
if [ "$rc" -eq 124 ]; then
    echo "test-arm.sh: running it once more"
    rc=0
    run || rc=$?
fi
exit "$rc"
