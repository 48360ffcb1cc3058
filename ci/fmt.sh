#!/usr/bin/env bash
# Why: one formatting for the whole tree (rustfmt.toml), checked, never fixed silently.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)
(cd core/nostd-check && cargo fmt -- --check)
