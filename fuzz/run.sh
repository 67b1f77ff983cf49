#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] - build and run the slaballoc fuzzer for a bounded time.
#
# Builds fuzz/fuzz_alloc.c against target/release/libslaballoc.a:
#   with clang -fsanitize=fuzzer (libFuzzer; no AddressSanitizer, which would
#   replace malloc) when available, else with $CC -DSTANDALONE (deterministic
#   random inputs, no coverage feedback). FUZZ_MODE=standalone forces the latter.
# Runs for SECONDS (default 30), prints executions and findings, exits non-zero
# on a crash / failed check (libFuzzer leaves the input in $out/crash-*).
# Output: c-tests/build/fuzz/ (corpus kept between runs in corpus/).
set -u
secs=${1:-30}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
ar=$root/target/release/libslaballoc.a
out=$root/c-tests/build/fuzz
mkdir -p "$out/corpus"
[ -f "$ar" ] || { echo "fuzz: no $ar (make build)"; exit 2; }
libs="-lpthread -ldl -lgcc_s -lc -lm -lrt -lutil"
mode=${FUZZ_MODE:-}
if [ -z "$mode" ]; then
    if command -v clang >/dev/null 2>&1 &&
        echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
        clang -fsanitize=fuzzer -x c - -o "$out/probe" >/dev/null 2>&1; then
        mode=libfuzzer
    else
        mode=standalone
    fi
fi
if [ "$mode" = libfuzzer ]; then
    clang -O1 -g -fsanitize=fuzzer -Wall -rdynamic -o "$out/fuzz_alloc" "$here/fuzz_alloc.c" "$ar" $libs \
        >"$out/build.log" 2>&1 || { cat "$out/build.log"; echo "fuzz: build failed"; exit 2; }
    echo "fuzz: libFuzzer, $secs s"
    # -rss_limit_mb: the inputs keep at most 64 blocks of <= 4 MiB
    (cd "$out" && ./fuzz_alloc -max_total_time="$secs" -max_len=4096 -rss_limit_mb=4096 -timeout=20 \
        -print_final_stats=1 corpus) >"$out/fuzz.log" 2>&1
    st=$?
    grep -E "resolves into|^#[0-9]+ *DONE|stat::number_of_executed_units|stat::new_units_added|CHECK FAILED|ERROR|SUMMARY|crash-|Test unit written" "$out/fuzz.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz.log")
    ncorp=$(ls "$out/corpus" | wc -l)
    crashes=$(ls "$out" | grep -c '^crash-\|^timeout-\|^oom-')
    echo "fuzz: executions=${execs:-?} corpus=$ncorp findings=$([ $st = 0 ] && echo 0 || echo 1) (crash files in $out: $crashes) status=$st"
    exit $st
else
    ${CC:-cc} -O2 -g -Wall -DSTANDALONE -rdynamic -o "$out/fuzz_alloc_standalone" "$here/fuzz_alloc.c" "$ar" $libs \
        >"$out/build.log" 2>&1 || { cat "$out/build.log"; echo "fuzz: build failed"; exit 2; }
    echo "fuzz: standalone (no libFuzzer), $secs s"
    "$out/fuzz_alloc_standalone" "$secs" >"$out/fuzz.log" 2>&1
    st=$?
    cat "$out/fuzz.log" | tail -5
    echo "fuzz: findings=$([ $st = 0 ] && echo 0 || echo 1) status=$st"
    exit $st
fi
