#!/usr/bin/env bash
# Why: fails CI when the packer misses the issue 3 targets on the bimodal trace, and when the placement simulator's table in BENCHMARKS.md is not what the simulator prints (it is seeded, so its output is the same on every run and machine: checked by running it twice).
#
# Usage: ci/simulate.sh            check (CI): writes the table under target/simulate/
#                                  and compares it with BENCHMARKS.md; changes no tracked file
#        ci/simulate.sh --update   also writes the table into BENCHMARKS.md, between the
#                                  <!-- sim:begin --> / <!-- sim:end --> markers
set -euo pipefail
cd "$(dirname "$0")/.."

update=0
case "${1:-}" in
"") ;;
--update) update=1 ;;
*)
    echo "usage: ci/simulate.sh [--update]" >&2
    exit 2
    ;;
esac

out="${CARGO_TARGET_DIR:-target}/simulate"
mkdir -p "$out"
table="$out/table.md"

# Runs the simulator into $1; exits on anything but 0 (targets met) or 1
# (a target missed, reported after the comparison).
status=0
simulate() {
    local s=0
    cargo run --quiet --release -p respool-benches --bin simulate -- --check >"$1" || s=$?
    if [ "$s" -ne 0 ] && [ "$s" -ne 1 ]; then
        echo "the simulator failed (exit $s)" >&2
        exit "$s"
    fi
    status=$s
}
simulate "$table"
simulate "$out/table.again.md"
if ! diff -u "$table" "$out/table.again.md" >&2; then
    echo "two runs of the seeded simulator printed different tables (above): it is not deterministic" >&2
    exit 1
fi
echo "the simulator printed the same table twice ($table)"

grep -q '^<!-- sim:begin -->$' BENCHMARKS.md && grep -q '^<!-- sim:end -->$' BENCHMARKS.md || {
    echo "BENCHMARKS.md lacks the <!-- sim:begin --> / <!-- sim:end --> markers" >&2
    exit 1
}
# What lies between the markers: a blank line, the table, a blank line.
awk '
    /^<!-- sim:begin -->$/ { inside = 1; next }
    /^<!-- sim:end -->$/   { inside = 0 }
    inside                 { print }
' BENCHMARKS.md | sed '1{/^$/d}' | sed '${/^$/d}' >"$out/benchmarks-section.md"

if [ "$update" -eq 1 ]; then
    awk -v table="$table" '
        /^<!-- sim:begin -->$/ { print; print ""; while ((getline line < table) > 0) print line; print ""; skip = 1; next }
        /^<!-- sim:end -->$/   { skip = 0 }
        !skip                  { print }
    ' BENCHMARKS.md >"$out/BENCHMARKS.md"
    cat "$out/BENCHMARKS.md" >BENCHMARKS.md
    echo "BENCHMARKS.md: simulator section updated"
elif ! diff -u "$out/benchmarks-section.md" "$table" >&2; then
    echo >&2
    echo "BENCHMARKS.md's simulator section (between the sim markers) is not what the simulator prints" >&2
    echo "(diff above: - BENCHMARKS.md, + the simulator); update it with: ci/simulate.sh --update" >&2
    exit 1
else
    echo "BENCHMARKS.md's simulator section matches the simulator's output"
fi

if [ "$status" -eq 1 ]; then
    echo "the packer missed an enforced target (see the Targets list in BENCHMARKS.md)" >&2
    exit 1
fi
