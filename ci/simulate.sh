#!/usr/bin/env bash
# Why: keeps the placement simulator's table in BENCHMARKS.md current and fails CI when the packer misses the issue 3 targets on the bimodal trace.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp)
trap 'rm -f "$out" "$out.md"' EXIT

status=0
cargo run --quiet --release -p respool-benches --bin simulate -- --check >"$out" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
    echo "the simulator failed (exit $status)" >&2
    exit "$status"
fi

# Replace what lies between the markers (the markers stay).
grep -q '^<!-- sim:begin -->$' BENCHMARKS.md && grep -q '^<!-- sim:end -->$' BENCHMARKS.md || {
    echo "BENCHMARKS.md lacks the <!-- sim:begin --> / <!-- sim:end --> markers" >&2
    exit 1
}
awk -v table="$out" '
    /^<!-- sim:begin -->$/ { print; print ""; while ((getline line < table) > 0) print line; print ""; skip = 1; next }
    /^<!-- sim:end -->$/   { skip = 0 }
    !skip                  { print }
' BENCHMARKS.md >"$out.md"
cat "$out.md" >BENCHMARKS.md
echo "BENCHMARKS.md: simulator section updated"

if [ "$status" -eq 1 ]; then
    echo "the packer missed an enforced target (see the Targets list in BENCHMARKS.md)" >&2
    exit 1
fi
