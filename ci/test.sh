#!/usr/bin/env bash
# Why: the unit, integration, property and doc tests of every crate, with and without the optional features.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --exclude respool-benches
cargo test -p respool-benches --lib
cargo test -p respool --features hwloc,nvml
cargo test -p respool-sys --features hwloc,nvml
