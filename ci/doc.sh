#!/usr/bin/env bash
# Why: the API documentation builds without a warning (broken links, missing docs), and no two crates claim the lib name `respool`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features 2>&1) || { echo "$out"; exit 1; }
if echo "$out" | grep -i "collision" >/dev/null; then
    echo "$out" | grep -i -A3 collision
    echo "cargo doc reports an output collision" >&2
    exit 1
fi
echo "docs ok"
