#!/usr/bin/env bash
# Why: README's first command, exactly as a newcomer runs it, twice in a row (the second starts warm from the first's profiles): the demonstration must run and respool must keep every run under the memory budget (the demo exits 1 otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p respool --example demo
# And again, as a user who reruns it: this run starts warm from the profiles
# the first one saved (a warm start once panicked on a learned estimate).
cargo run --release -q -p respool --example demo
# The other example README points to (the Go library's defects, fixed).
cargo run --release -q -p respool --example go_migration
