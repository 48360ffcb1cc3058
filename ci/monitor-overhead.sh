#!/usr/bin/env bash
# Why: the roadmap's promise that monitoring costs under 0.1% of one CPU, checked on CPU time (per sample, against the default 1 s interval), which machine load does not inflate.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p respool-sys --example monitor_overhead -- 5 1000 2000
