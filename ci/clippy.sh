#!/usr/bin/env bash
# Why: every lint is an error, on every target, with and without the optional features (the core's no-panic lints live in core/src/lib.rs), in the fuzz and no_std workspaces too.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p respool --all-targets --features hwloc,nvml,redis-tls -- -D warnings
cargo clippy -p respool-sys --all-targets --features hwloc,nvml -- -D warnings
cargo clippy -p respool-observe --all-targets --all-features -- -D warnings
# The no_std host binary (its own workspace: panic = "abort", no std).
(cd core/nostd-check && cargo clippy -- -D warnings)
# The fuzz targets (nightly, as cargo-fuzz builds them; `fuzzing` is the cfg
# cargo-fuzz sets, which turns on the core's invariant checkers).
(cd fuzz && RUSTFLAGS="--cfg fuzzing" cargo +nightly clippy --all-targets -- -D warnings)
