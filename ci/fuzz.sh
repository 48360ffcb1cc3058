#!/usr/bin/env bash
# Why: runs every cargo-fuzz target (tracker, packer, queue, predictors) for a bounded time, from its committed seed corpus, so no invariant breaks on arbitrary input.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-30}"
# A failing `cargo fuzz list` inside `for ... in $(...)` would pass silently.
targets=$(cargo +nightly fuzz list)
if [[ -z "$targets" ]]; then
    echo "ci/fuzz.sh: no fuzz targets found" >&2
    exit 1
fi
for target in $targets; do
    echo "== fuzz $target for ${secs}s"
    # A scratch copy of the seed corpus: new inputs found in CI are not committed.
    work=$(mktemp -d)
    cp -r "corpus/$target/." "$work/" 2>/dev/null || true
    cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$secs" -print_final_stats=1 2>&1 | tail -3
    rm -rf "$work"
done
