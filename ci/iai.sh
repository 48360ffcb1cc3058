#!/usr/bin/env bash
# Why: instruction counts (valgrind/callgrind via gungraun) of the tracker, packer, queue, predictors, tracking allocator, the pool's submission and run paths (with and without an observer) and the runtime's resource tracking, guarded by hard limits: a regression fails CI whatever the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in iai_tracker iai_packer iai_queue iai_predict iai_alloc iai_pool resource_tracking; do
    cargo bench -p respool-benches --bench "$b"
done
