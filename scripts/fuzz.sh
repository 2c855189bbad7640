#!/usr/bin/env bash
# fuzz.sh [--minutes N | --seconds N] [TARGET...]: builds the libFuzzer targets of tests/fuzz
# (clang, -fsanitize=fuzzer,address,undefined, in build-fuzz/ or $FUZZ_BUILD_DIR) and runs each
# for a bounded time (default 25 s; every target when none is named; one per CPU at a time),
# starting from its seed corpus, its regressions and what earlier runs here found
# (build-fuzz/corpus/<target>). Prints per target the executions, the coverage (libFuzzer's final
# cov/ft) and any crash, then "N passed, N failed"; exits non-zero when a target crashed. A
# crashing input is left in build-fuzz/crashes/<target>/: fix the bug, then add the input to
# tests/fuzz/regressions/<target>/ so that every test suite replays it (tests/fuzz/meson.build).
set -uo pipefail
cd "$(dirname "$0")/.."

all_targets=(gguf llama2c tokenizer api chat jinja stream config)
# the longest input worth trying per target (bytes): GGUF headers with a vocabulary are the
# largest; the rest are requests, texts and token lists
declare -A max_len=([gguf]=8192 [llama2c]=4096 [tokenizer]=1024 [api]=4096 [chat]=2048
    [jinja]=4096 [stream]=1024 [config]=4096)
seconds=25
targets=()
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) seconds=$(($2 * 60)); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
        [ -n "${max_len[$1]:-}" ] || { echo "fuzz.sh: unknown target '$1' (${all_targets[*]})" >&2; exit 2; }
        targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# clang and its libFuzzer runtime, from Debian, when missing (as scripts/test-deps.sh does)
missing=()
for p in clang libclang-rt-14-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "fuzz.sh: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzzing=true -Dbuildtype=debugoptimized \
        -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link \
        >"$build.setup.log" 2>&1 || { cat "$build.setup.log"; echo "0 passed, ${#targets[@]} failed"; exit 1; }
fi
if ! ninja -C "$build" "${targets[@]/#/tests/fuzz/fuzz_}" >"$build/fuzz-build.log" 2>&1; then
    tail -n 30 "$build/fuzz-build.log"
    echo "0 passed, ${#targets[@]} failed"
    exit 1
fi

# UndefinedBehaviorSanitizer's reports end the run (a crash), as AddressSanitizer's do
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# one target per CPU at a time, so that each still gets a whole core for its time; the results
# are reported in the targets' order
fuzz_one() { # target: runs it and writes its report to $build/fuzz-<target>.report
    local t=$1 work="$build/corpus/$1" crashes="$build/crashes/$1" log="$build/fuzz-$1.log"
    mkdir -p "$work" "$crashes"
    local dirs=("$work" "tests/fuzz/corpus/$t")
    [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
    "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" \
        -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/" \
        "${dirs[@]}" >"$log" 2>&1
    local rc=$?
    local execs cov corp summary
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$')
    summary="${execs:-?} executions, ${cov:-cov: ?}, corpus ${corp:-?} inputs"
    if [ $rc -eq 0 ]; then
        echo "fuzz_$t: ok: $summary in ${seconds} s"
    else
        local crash
        crash=$(grep -o "Test unit written to .*" "$log" | tail -n 1 |
            sed 's/Test unit written to //')
        echo "fuzz_$t: FAILED (exit $rc): $summary"
        grep -E 'ERROR: |SUMMARY: |property broken|runtime error' "$log" | head -n 5 |
            sed 's/^/    /'
        echo "    input: ${crash:-none written}; log: $log"
    fi >"$build/fuzz-$t.report"
    return $rc
}
jobs=$(nproc 2>/dev/null || echo 1)
pass=0
fail=0
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    pids=()
    for t in "${batch[@]}"; do
        fuzz_one "$t" &
        pids+=($!)
    done
    for k in "${!batch[@]}"; do
        if wait "${pids[$k]}"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
        cat "$build/fuzz-${batch[$k]}.report"
    done
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
