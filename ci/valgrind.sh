#!/usr/bin/env bash
# Why: runs the unit tests of the runtime (inline closure storage, join handles, run queue, timer, tracking allocator) and of the platform readings (libc calls, the monitor thread, allocation-free parsing) under valgrind memcheck: no invalid access, no leak.
set -euo pipefail
cd "$(dirname "$0")/.."
for pkg in respool-sys respool; do
    json=$(cargo test -p "$pkg" --lib --no-run --message-format=json)
    bin=$(echo "$json" | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
    if [ ! -x "$bin" ]; then
        echo "could not find the $pkg unit-test binary" >&2
        exit 1
    fi
    valgrind --quiet --error-exitcode=1 --leak-check=full --show-possibly-lost=no \
        --errors-for-leak-kinds=definite,indirect \
        "$bin" --test-threads=2 -q
    echo "valgrind ($pkg): no errors"
done
