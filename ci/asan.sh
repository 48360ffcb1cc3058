#!/usr/bin/env bash
# Why: runs the tests that exercise unsafe code (core; the platform readings' libc calls: thread CPU time, affinity; the runtime's job storage, join handles, run queue, tracking allocator and pool; the batch API's borrowing lanes and hand-offs) under AddressSanitizer, since miri is not available.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/asan"
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
# std itself is not instrumented (no rust-src for -Zbuild-std here), but every
# crate of this workspace and its dependencies are.
target=x86_64-unknown-linux-gnu
cargo +nightly test --target "$target" -p respool-core --lib --tests "$@"
cargo +nightly test --target "$target" -p respool-sys --lib "$@"
cargo +nightly test --target "$target" -p respool --lib --test pool --test learning --test batch_go --test batch_defects "$@"
