#!/usr/bin/env bash
# Builds every cargo-fuzz target of fuzz/ and runs each briefly from its seed corpus; fails on any finding
# (a crash, a panic, an invariant violation, a leak or a timeout).
#
#   scripts/fuzz-smoke.sh            # 30 s per target
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh
#
# Needs the nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz`); without them it says so
# and exits 0, so it can sit in CI before every machine has them. Grown corpora go to fuzz/work/<target>/
# (ignored by git); fuzz/corpus/<target>/ keeps only the committed seeds. Findings are left in
# fuzz/artifacts/<target>/ (see fuzz/README.md for turning one into a regression test).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
targets=(parse registrar users_file config registrant journal)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-smoke: no nightly toolchain (rustup toolchain install nightly): skipped"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is not installed (cargo +nightly install cargo-fuzz): skipped"
    exit 0
fi

cargo +nightly fuzz build
failed=()
for target in "${targets[@]}"; do
    mkdir -p "work/$target"
    log="work/$target.smoke.log"
    echo "fuzz-smoke: $target for ${seconds}s"
    # -max_len: room for a dozen REGISTERs per registrar input; -timeout: one input taking 10 s is a hang.
    if cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" | sed "s/^/  $target /"
    else
        echo "fuzz-smoke: $target FAILED; its output:"
        grep -E -A 30 'panicked|ERROR|SUMMARY' "$log" | head -n 60 || tail -n 60 "$log"
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz-smoke: findings in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets, no finding"
