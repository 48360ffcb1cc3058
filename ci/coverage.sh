#!/usr/bin/env bash
# Why: measures line coverage of the core, the platform readings and the runtime (cargo-llvm-cov with Debian's llvm-22) and fails below 80% for any of them.
set -euo pipefail
cd "$(dirname "$0")/.."
export LLVM_COV="${LLVM_COV:-$(command -v llvm-cov-22 || echo /usr/lib/llvm-22/bin/llvm-cov)}"
export LLVM_PROFDATA="${LLVM_PROFDATA:-$(command -v llvm-profdata-22 || echo /usr/lib/llvm-22/bin/llvm-profdata)}"
export CARGO_LLVM_COV_SETUP=no
export CARGO_LLVM_COV_TARGET_DIR="${CARGO_LLVM_COV_TARGET_DIR:-$PWD/target/coverage}"
min="${COVERAGE_MIN:-80}"
cargo llvm-cov clean --workspace
cargo llvm-cov --no-report -p respool-core -p respool-sys -p respool
cargo llvm-cov report --summary-only > target/coverage-summary.txt
cat target/coverage-summary.txt
# Lines covered per crate, from the per-file table (path, ..., lines, missed lines, cover, ...).
status=0
for crate in core sys std-runtime; do
    read -r lines missed < <(awk -v dir="$crate/src/" '
        index($1, dir) == 1 { l += $8; m += $9 }
        END { print l + 0, m + 0 }' target/coverage-summary.txt)
    if [ "$lines" -eq 0 ]; then
        echo "no coverage data for $crate" >&2
        status=1
        continue
    fi
    pct=$(( (lines - missed) * 100 / lines ))
    echo "coverage of $crate: $pct% of $lines lines"
    if [ "$pct" -lt "$min" ]; then
        echo "coverage of $crate is below $min%" >&2
        status=1
    fi
done
exit $status
