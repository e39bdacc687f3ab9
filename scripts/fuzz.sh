#!/usr/bin/env bash
# Runs the cargo-fuzz targets under fuzz/ one after another, each for SECONDS
# (default 30), and prints one line of figures per target and a verdict.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: ingest matcher promql_template chat_render
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz from
# crates.io when it is missing. The corpus grows in fuzz/corpus/<target>
# (seeded from fuzz/seeds/<target>), crashes land in fuzz/artifacts/<target>,
# full logs in fuzz/logs/<target>.log.
#
# Environment: ROUTER_FUZZ_KNOWN (bugs known to be open, tolerated; see
# fuzz/src/lib.rs), FUZZ_ARGS (extra libFuzzer flags, e.g. "-jobs=2").
# Exit status: 0 when no target crashed, 1 when one did, 2 when it cannot run.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(ingest matcher promql_template chat_render)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: the nightly toolchain is not installed (rustup toolchain install nightly)"
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (crates.io)"
    cargo install --locked cargo-fuzz
fi

mkdir -p fuzz/logs
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/logs/$t.log"
    start=$(date +%s)
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    (cd fuzz && cargo +nightly fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" ${FUZZ_ARGS:-}) >"$log" 2>&1
    status=$?
    set -e
    took=$(($(date +%s) - start))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    printf 'fuzz: %-16s %5ss  execs=%s  execs/s=%s  cov=%s  ft=%s  corpus=%s  peak_rss_mb=%s  exit=%s\n' \
        "$t" "$took" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$status"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        grep -E 'panicked at|^Test unit written|SUMMARY|error' "$log" | head -5 | sed 's/^/fuzz:   /'
    fi
done

if [ ${#failed[@]} -eq 0 ]; then
    echo "fuzz: PASS: ${targets[*]} ran ${seconds}s each without a crash"
else
    echo "fuzz: FAIL: ${failed[*]} crashed (inputs in fuzz/artifacts/, logs in fuzz/logs/)"
    exit 1
fi
