#!/usr/bin/env bash
# Why: guards the roadmap's "more than 90% prediction accuracy after 10 runs" on real work (parsing, sorting, image buffers), measured by the pool's own instruments.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${RESPOOL_ACCURACY_ROUNDS:-30}
SEEDS=${RESPOOL_ACCURACY_SEEDS:-"42 7 1"}

cargo build --quiet --release -p respool --example accuracy
status=0
for seed in $SEEDS; do
    echo "== seed $seed"
    ./target/release/examples/accuracy "$ROUNDS" "$seed" || status=1
    echo
done
if [ "$status" -ne 0 ]; then
    echo "FAIL: the memory accuracy target (> 90% within 10% after 10 runs) was missed for some seed" >&2
    exit 1
fi
echo "PASS: memory accuracy target met for seeds $SEEDS"
