#!/usr/bin/env bash
# Why: every benchmark and benchmark tool compiles (they are not run in CI: wall-clock results need a quiet machine; see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p respool-benches --no-run
cargo build --release -p respool-benches --bins
cargo build --release -p respool --examples
