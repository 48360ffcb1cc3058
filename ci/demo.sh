#!/usr/bin/env bash
# Why: README's first command, exactly as a newcomer runs it, twice in a row: the demonstration must run, and respool run must stay under the memory budget and finish every job in both of its runs (the demo exits 1 otherwise). Then the library demo of wave 1 (it exits 1 if respool goes over its budget), warm on its second run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p respool-cli -- demo
# And again, as a user who reruns it.
cargo run --release -q -p respool-cli -- demo
# The library demo, twice (the second starts warm from the first's
# profiles: a warm start once panicked on a learned estimate).
cargo run --release -q -p respool --example demo
cargo run --release -q -p respool --example demo
# The other example README points to (the Go library's defects, fixed).
cargo run --release -q -p respool --example go_migration
