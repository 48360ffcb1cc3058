#!/usr/bin/env bash
# Why: runs the runtime's unit tests (inline closure storage, join handles, run queue, timer, tracking allocator) under valgrind memcheck: no invalid access, no leak.
set -euo pipefail
cd "$(dirname "$0")/.."
json=$(cargo test -p respool --lib --no-run --message-format=json)
bin=$(echo "$json" | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
if [ ! -x "$bin" ]; then
    echo "could not find the respool unit-test binary" >&2
    exit 1
fi
valgrind --quiet --error-exitcode=1 --leak-check=full --show-possibly-lost=no \
    --errors-for-leak-kinds=definite,indirect \
    "$bin" --test-threads=2 -q
echo "valgrind: no errors"
