#!/usr/bin/env bash
# Why: proves the lock-free tracker, the admission counters and the release log correct under every thread interleaving (loom).
set -euo pipefail
cd "$(dirname "$0")/.."
# A separate target dir: the respool_loom cfg rebuilds the core and must not
# invalidate the normal build cache.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
export RUSTFLAGS="--cfg respool_loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
cargo test -p respool-core --release --test loom_tracker -- --test-threads=1 "$@"
