#!/usr/bin/env bash
# Why: issue 18's figures, side by side in one run: `respool run`'s per-command
# overhead against GNU parallel and `xargs -P` (1,000 trivial commands), and
# two memory workloads in a real memory cgroup (GNU sort, whose memory grows
# with its input) against parallel, parallel --memfree, xargs -P and every
# fixed -j. Prints markdown tables (BENCHMARKS.md, "respool run against GNU
# parallel and xargs").
#
# Usage: benches/run_vs_peers.sh [ROUNDS]   (default 5; the memory part needs
# root for its cgroups and is skipped, said so, without)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-5}
JOBS=${RESPOOL_BENCH_JOBS:-$(nproc)}
LIMIT_MIB=${RESPOOL_BENCH_LIMIT_MIB:-512}
LIMIT=$((LIMIT_MIB << 20))

command -v parallel >/dev/null || { echo "needs GNU parallel (apt-get install parallel)" >&2; exit 1; }
parallel --version 2>/dev/null | head -1 | grep -q "GNU parallel" || { echo "'parallel' is not GNU parallel" >&2; exit 1; }

cargo build --quiet --release -p respool-cli
R=$PWD/target/release/respool
WORK=$(mktemp -d)
# shellcheck source=ci/lib/cgroup.sh
. ci/lib/cgroup.sh
trap 'cgroup_cleanup; rm -rf "$WORK"' EXIT

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# median, min and max of the numbers on standard input: "median (min-max)"
spread() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f (%.3f-%.3f)", m, v[1], v[NR] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

echo "# respool run against GNU parallel and xargs -P"
echo
echo "$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(uname -r), $(parallel --version | head -1), xargs $(xargs --version | head -1 | awk '{print $NF}'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ---------------------------------------------------------------------------
echo "## 1. Per-command overhead: 1,000 \`true\`, -j $JOBS, $ROUNDS rounds (order rotated each round)"
echo
seq 1000 >"$WORK/in"
OV_STORE="$WORK/overhead.json"
# Warm-up: respool learns the class `true` (its first runs are probes).
"$R" run -j "$JOBS" --store "$OV_STORE" true <"$WORK/in" >/dev/null 2>&1
declare -A T
tools=(respool parallel xargs)
run_tool() {
    case $1 in
    respool) "$R" run -j "$JOBS" --store "$OV_STORE" true <"$WORK/in" >/dev/null 2>&1 ;;
    parallel) parallel -j "$JOBS" true <"$WORK/in" >/dev/null 2>&1 ;;
    xargs) xargs -P "$JOBS" -n 1 true <"$WORK/in" >/dev/null 2>&1 ;;
    esac
}
for round in $(seq 1 "$ROUNDS"); do
    for k in 0 1 2; do
        tool=${tools[$(((round + k) % 3))]}
        t0=$(now)
        run_tool "$tool"
        t1=$(now)
        T[$tool,$round]=$(secs "$t0" "$t1")
    done
done
echo "| tool | seconds, median (min-max) | respool / tool, same-round median (min-max) |"
echo "|---|---:|---:|"
for tool in "${tools[@]}"; do
    times=$(for r in $(seq 1 "$ROUNDS"); do echo "${T[$tool,$r]}"; done | spread)
    ratios=$(for r in $(seq 1 "$ROUNDS"); do ratio "${T[respool,$r]}" "${T[$tool,$r]}"; echo; done | spread)
    echo "| $tool | $times | $ratios |"
done
echo
echo "Targets: respool at most 1/3 of parallel's time (ratio <= 0.333) and within 2x of xargs (ratio <= 2)."
echo

# ---------------------------------------------------------------------------
if ! cgroup_detect; then
    echo "## 2. Memory workloads: skipped ($CG_WHY)"
    exit 0
fi

# Input files of numbers; GNU sort's peak grows with the input (about 7x
# here). $1: path, $2: lines.
numbers() { seq 1 "$2" | shuf --random-source=<(yes) >"$1"; }

SORT=(sort --parallel=1 -o /dev/null)
# measure NAME CMD...: runs CMD in a fresh cgroup limited to LIMIT; sets
# SECS, OOM, PEAK_MIB, RC and appends "name secs oom peak rc" to $WORK/runs.
measure() {
    local name=$1 g t0 t1
    shift
    g=$(cgroup_make "respool-bench-$$-$RANDOM" "$LIMIT") || { echo "cannot make a cgroup under $CG_PARENT" >&2; exit 1; }
    t0=$(now)
    RC=0
    cgroup_run "$g" "$@" >"$WORK/out" 2>&1 || RC=$?
    t1=$(now)
    SECS=$(secs "$t0" "$t1")
    OOM=$(cgroup_oom_kills "$g")
    PEAK_MIB=$(($(cgroup_peak "$g") >> 20))
    echo "$name $SECS $OOM $PEAK_MIB $RC" >>"$WORK/runs"
    rmdir "$g" 2>/dev/null || true
}

# Table of one workload's runs: name, rounds, OOM-killed rounds, time
# median (min-max) of every round, peak.
report() { # $1: file of runs, then names in order
    local f=$1 name
    shift
    echo "| runner | rounds | rounds with an OOM kill (kills) | failed rounds | seconds, median (min-max) | peak MiB (max) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for name in "$@"; do
        awk -v n="$name" '$1 == n' "$f" >"$WORK/sel"
        [ -s "$WORK/sel" ] || continue
        local rounds oomr kills failed times peak
        rounds=$(wc -l <"$WORK/sel")
        oomr=$(awk '$3 > 0' "$WORK/sel" | wc -l)
        kills=$(awk '{ s += $3 } END { print s + 0 }' "$WORK/sel")
        failed=$(awk '$5 != 0' "$WORK/sel" | wc -l)
        times=$(awk '{ print $2 }' "$WORK/sel" | spread)
        peak=$(awk '{ if ($4 > m) m = $4 } END { print m + 0 }' "$WORK/sel")
        echo "| $name | $rounds | $oomr ($kills) | $failed | $times | $peak |"
    done
}

# A fixed -j is safe when none of its rounds had an OOM kill or a failure.
best_safe() { # $1: file; prints "name median" of the fastest safe xargs -P k
    local f=$1 k best="" bestt=""
    for k in $(seq 1 "$2"); do
        awk -v n="xargs-P$k" '$1 == n' "$f" >"$WORK/sel"
        [ -s "$WORK/sel" ] || continue
        if [ "$(awk '$3 > 0 || $5 != 0' "$WORK/sel" | wc -l)" -eq 0 ]; then
            local t
            t=$(awk '{ print $2 }' "$WORK/sel" | spread | cut -d' ' -f1)
            if [ -z "$bestt" ] || awk -v a="$t" -v b="$bestt" 'BEGIN { exit !(a < b) }'; then
                best="xargs-P$k"
                bestt=$t
            fi
        fi
    done
    echo "$best $bestt"
}

# workload NAME N_MAX FILES...: every runner on the files, ROUNDS rounds.
workload() {
    local wname=$1 nmax=$2
    shift 2
    local files=("$@") store="$WORK/$wname.json" list="$WORK/$wname.list" k round
    printf '%s\n' "${files[@]}" >"$list"
    : >"$WORK/$wname.runs"
    # respool's first run, from nothing learned (once).
    measure respool-first "$R" run -j "$nmax" --store "$store" "${SORT[@]}" ::: "${files[@]}"
    tail -1 "$WORK/runs" >>"$WORK/$wname.runs"
    for round in $(seq 1 "$ROUNDS"); do
        local runners=("respool-j$nmax" "parallel-j$nmax" "parallel-memfree-j$nmax" "xargs-P$nmax")
        for k in $(seq 1 $((nmax - 1))); do runners+=("xargs-P$k"); done
        local i n=${#runners[@]}
        for i in $(seq 0 $((n - 1))); do
            local r=${runners[$(((round + i) % n))]}
            case $r in
            respool-j*) measure "$r" "$R" run -j "$nmax" --store "$store" "${SORT[@]}" ::: "${files[@]}" ;;
            parallel-memfree-j*) measure "$r" parallel -j "$nmax" --memfree 256M "${SORT[@]}" :::: "$list" ;;
            parallel-j*) measure "$r" parallel -j "$nmax" "${SORT[@]}" :::: "$list" ;;
            xargs-P*) measure "$r" xargs -P "${r#xargs-P}" -n 1 -a "$list" "${SORT[@]}" ;;
            esac
            tail -1 "$WORK/runs" >>"$WORK/$wname.runs"
        done
    done
    local names=("respool-first" "respool-j$nmax" "parallel-j$nmax" "parallel-memfree-j$nmax" "xargs-P$nmax")
    for k in $(seq 1 $((nmax - 1))); do names+=("xargs-P$k"); done
    report "$WORK/$wname.runs" "${names[@]}"
    read -r best bestt < <(best_safe "$WORK/$wname.runs" "$nmax")
    local rt
    rt=$(awk -v n="respool-j$nmax" '$1 == n { print $2 }' "$WORK/$wname.runs" | spread | cut -d' ' -f1)
    echo
    if [ -n "$best" ]; then
        # Same-round ratios: respool's time in round r over the best safe
        # fixed -j's time in round r.
        local same
        same=$(awk -v a="respool-j$nmax" -v b="$best" '
            $1 == a { ta[++na] = $2 } $1 == b { tb[++nb] = $2 }
            END { for (i = 1; i <= na && i <= nb; i++) printf "%.3f\n", ta[i] / tb[i] }' "$WORK/$wname.runs" | spread)
        echo "Best memory-safe fixed -j: $best ($bestt s); respool run -j $nmax (warm): $rt s. respool's time over $best's, same round: $same (ratio of medians $(ratio "$rt" "$bestt"))."
    else
        echo "No fixed -j was memory-safe in every round; respool run -j $nmax (warm): $rt s."
    fi
    echo
}

echo "## 2. Memory workloads in a cgroup v$CG_VERSION limited to $LIMIT_MIB MiB (no swap), $ROUNDS rounds, runners' order rotated each round"
echo
echo "Every runner runs in a fresh cgroup limited to $LIMIT_MIB MiB: respool finds its budget there (the limit less its 10% / 64 MiB headroom), the others do not look. \`parallel --memfree\` reads /proc/meminfo (the host's free memory), not the cgroup."
echo

echo "### 2a. Cores limit: 12 sorts of about 150 MiB each (3 at once fit, 4 do not), -j 4 (twice the cores of this machine, as make -j's common advice has it)"
echo
files=()
for i in $(seq 1 12); do numbers "$WORK/u$i.txt" $((2800000 + i * 10000)); files+=("$WORK/u$i.txt"); done
workload uniform 4 "${files[@]}"

echo "### 2b. Memory limits: 2 sorts of about 300 MiB first (two together do not fit), then 24 small ones (5-40 MiB), -j $JOBS (as many as cores)"
echo
files=()
for i in 1 2; do numbers "$WORK/l$i.txt" $((5600000 + i * 10000)); files+=("$WORK/l$i.txt"); done
for i in $(seq 1 24); do numbers "$WORK/s$i.txt" $((100000 + ((i * 7) % 24) * 30000)); files+=("$WORK/s$i.txt"); done
workload mixed "$JOBS" "${files[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
