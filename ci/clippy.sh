#!/usr/bin/env bash
# Why: every lint is an error, on every target, with and without the optional features (the core's no-panic lints live in core/src/lib.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p respool --all-targets --features hwloc,nvml -- -D warnings
