#!/usr/bin/env bash
# Why: proves the roadmap's "zero OOM kills" in a real memory cgroup: a count-only pool is OOM-killed there, respool with declared or learned requirements is not.
set -euo pipefail
cd "$(dirname "$0")/.."

# Settings (environment overrides): the cgroup limit, the workload, the number
# of learning invocations.
LIMIT_MIB=${RESPOOL_OOM_LIMIT_MIB:-512}
LIMIT=$((LIMIT_MIB * 1024 * 1024))
TASKS=${RESPOOL_OOM_TASKS:-48}
WORKERS=${RESPOOL_OOM_WORKERS:-8}
LEARN_RUNS=${RESPOOL_OOM_LEARN_RUNS:-4}
WORKLOAD=(--tasks "$TASKS" --workers "$WORKERS" --min-mib 40 --max-mib 120 --hold-ms 150)

# A machine where this cannot run skips it: exit 77 with the reason, which
# ci/all.sh reports as "skipped" (see the convention at the top of all.sh).
skip() {
    echo "SKIP oom-stress: $*"
    if [ -n "${CI_STEP_NOTES:-}" ]; then
        echo "$*" >>"$CI_STEP_NOTES"
    fi
    exit 77
}

# shellcheck source=ci/lib/cgroup.sh
. ci/lib/cgroup.sh
cgroup_detect || skip "$CG_WHY"
VERSION=$CG_VERSION
PARENT=$CG_PARENT

echo "== build (release)"
cargo build --quiet --release -p respool --example oom_stress
BIN=$PWD/target/release/examples/oom_stress

WORK=$(mktemp -d)
cleanup() {
    cgroup_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT

# Makes a fresh group with the limit and no swap; prints its path.
make_group() {
    cgroup_make "respool-oom-$$-$1" "$LIMIT"
}

oom_kills() { cgroup_oom_kills "$1"; }

peak_bytes() { cgroup_peak "$1"; }

ROWS=()
# run_case NAME ARGS...: runs the stress binary alone in a fresh group; sets
# RC, OOM, PEAK, SECS, DONE; appends a table row.
run_case() {
    local name=$1
    shift
    local g log t0 t1
    g=$(make_group "$name") || { echo "cannot create a cgroup under $PARENT" >&2; exit 1; }
    log="$WORK/$name.log"
    t0=$(date +%s%N)
    RC=0
    # The child joins the group before exec, so everything it allocates is charged there.
    cgroup_run "$g" "$BIN" "$@" >"$log" 2>&1 || RC=$?
    t1=$(date +%s%N)
    OOM=$(oom_kills "$g")
    PEAK=$(peak_bytes "$g")
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    DONE=$(sed -n 's/^RESULT .* completed=\([0-9]*\) .*/\1/p' "$log")
    DONE=${DONE:--}
    local peak_mib=n/a
    [ "$PEAK" != n/a ] && peak_mib=$((PEAK / 1024 / 1024))
    local status="exit $RC"
    [ "$RC" -eq 137 ] && status="SIGKILL"
    ROWS+=("| $name | $status | $OOM | $peak_mib | $SECS | $DONE/$TASKS |")
    echo "-- $name: $status, oom_kill $OOM, peak $peak_mib MiB, ${SECS}s, completed $DONE"
    grep -E '^(detected|pool:|RESULT)' "$log" | sed 's/^/   /' || true
    rmdir "$g" 2>/dev/null || true
}

FAIL=()
echo "== cgroup v$VERSION under $PARENT, limit $LIMIT_MIB MiB, no swap; $TASKS tasks of 40-120 MiB on $WORKERS workers"

echo "== 1. control: count-only pool ($WORKERS workers, no requirements)"
run_case control control "${WORKLOAD[@]}"
if [ "$OOM" -gt 0 ] || [ "$RC" -eq 137 ]; then
    echo "   control was OOM-killed, as it must be"
else
    FAIL+=("the count-only control survived (exit $RC, oom_kill $OOM): the test is meaningless at this limit")
fi

echo "== 2. respool, declared requirements, default (detected) capacity"
run_case declared declared "${WORKLOAD[@]}" --expect-limit "$LIMIT"
[ "$RC" -eq 3 ] && FAIL+=("respool's detected memory capacity is not the cgroup limit $LIMIT (see above)")
[ "$RC" -eq 0 ] || FAIL+=("declared: exit $RC")
[ "$OOM" -eq 0 ] || FAIL+=("declared: $OOM OOM kills")
if [ "$PEAK" != n/a ] && [ "$PEAK" -ge "$LIMIT" ]; then FAIL+=("declared: peak $PEAK >= limit"); fi

echo "== 3. respool learning requirements (classes + size hints, FileStore), $LEARN_RUNS invocations"
STORE="$WORK/profiles"
mkdir -p "$STORE"
for run in $(seq 1 "$LEARN_RUNS"); do
    run_case "learned-$run" learned "${WORKLOAD[@]}" --store "$STORE" --seed "$run" --expect-limit "$LIMIT"
    if [ "$run" -eq 1 ]; then
        echo "   run 1 starts from the fallback (256 MiB, 1 CPU per task): exit $RC, oom_kill $OOM (not asserted)"
    else
        [ "$RC" -eq 0 ] || FAIL+=("learned run $run: exit $RC")
        [ "$OOM" -eq 0 ] || FAIL+=("learned run $run: $OOM OOM kills")
        if [ "$PEAK" != n/a ] && [ "$PEAK" -ge "$LIMIT" ]; then FAIL+=("learned run $run: peak $PEAK >= limit"); fi
    fi
done

echo "== 4. informational: a fallback far below the tasks (16 MiB, 100 millicores), fresh store"
STORE_SMALL="$WORK/profiles-small"
mkdir -p "$STORE_SMALL"
for run in 1 2; do
    run_case "small-fallback-$run" learned "${WORKLOAD[@]}" --store "$STORE_SMALL" --seed "$run" \
        --fallback-mib 16 --fallback-cpu-m 100
done

echo
echo "| run | exit | oom_kill | peak (MiB) | makespan (s) | completed |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo "(limit $LIMIT_MIB MiB, cgroup v$VERSION; small-fallback rows are informational)"

if [ "${#FAIL[@]}" -gt 0 ]; then
    printf 'FAIL: %s\n' "${FAIL[@]}" >&2
    exit 1
fi
echo "PASS: control OOM-killed; respool declared and learned (runs 2-$LEARN_RUNS): zero OOM kills"
