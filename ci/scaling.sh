#!/usr/bin/env bash
# Why: respool's overhead against plain pools was only measured with 2 workers on a 2-core machine (issue 21, target 5); this runs the same side-by-side ratios (pool_ratios) at several worker counts so that a machine with more cores shows how the ratios move with them. Not part of CI's pass/fail: it prints tables to paste into BENCHMARKS.md with the machine named.
#
# Usage: ci/scaling.sh [workers...]   default 1 2 4 8 16 (on a 2-core machine: ci/scaling.sh 1 2)
# Env:   TASKS (default 100000), ROUNDS (default 7), RESPOOL_BENCH_WORKLOAD (one workload only),
#        OUT (default target/scaling: one file per worker count)
set -euo pipefail
cd "$(dirname "$0")/.."

workers=("$@")
[ "${#workers[@]}" -gt 0 ] || workers=(1 2 4 8 16)
tasks=${TASKS:-100000}
rounds=${ROUNDS:-7}
out=${OUT:-target/scaling}
mkdir -p "$out"

cargo build --release -p respool-benches --bin pool_ratios
bin=target/release/pool_ratios
echo "machine: $(nproc) CPUs, $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for w in "${workers[@]}"; do
    echo
    echo "## $w workers ($tasks tasks, $rounds rounds)"
    "$bin" "$tasks" "$rounds" "$w" | tee "$out/workers-$w.md"
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
