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

[ "$(id -u)" -eq 0 ] || skip "not root (creating a memory cgroup needs root)"
[ "$(uname -s)" = Linux ] || skip "not Linux (memory cgroups are Linux-only)"

# --- Which memory controller: pure v2 at /sys/fs/cgroup, else v1, else a v2
# mount (hybrid) that has the memory controller.
VERSION=""
PARENT=""
self_path() { # $1: "memory" (v1) or "" (v2): this shell's group path
    if [ -n "$1" ]; then
        awk -F: -v c="$1" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' /proc/self/cgroup
    else
        awk -F: '$1 == "0" && $2 == "" { print $3 }' /proc/self/cgroup
    fi
}
v2_parent() { # $1: v2 mount point; prints a parent under which children get memory.max
    local mnt=$1 path dir
    path=$(self_path "")
    [ -n "$path" ] || return 1
    dir="$mnt${path%/}"
    if [ "$path" = "/" ]; then
        grep -qw memory "$mnt/cgroup.controllers" || return 1
        grep -qw memory "$mnt/cgroup.subtree_control" || echo +memory >"$mnt/cgroup.subtree_control" 2>/dev/null || return 1
        echo "$mnt"
    else
        # A sibling of this group: its parent already hands memory down
        # (no-internal-processes rule: this group has processes).
        grep -qw memory "$dir/cgroup.controllers" 2>/dev/null || return 1
        dirname "$dir"
    fi
}
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    VERSION=2
    PARENT=$(v2_parent /sys/fs/cgroup) || skip "cgroup v2 at /sys/fs/cgroup without a memory controller this process can delegate"
elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    VERSION=1
    PARENT="/sys/fs/cgroup/memory$(self_path memory)"
    PARENT=${PARENT%/}
else
    mnt=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
    if [ -n "$mnt" ] && PARENT=$(v2_parent "$mnt"); then
        VERSION=2
    else
        skip "no memory cgroup controller (neither v1 nor v2) is mounted"
    fi
fi
[ -w "$PARENT" ] || skip "$PARENT is not writable"

echo "== build (release)"
cargo build --quiet --release -p respool --example oom_stress
BIN=$PWD/target/release/examples/oom_stress

WORK=$(mktemp -d)
GROUPS_MADE=()
cleanup() {
    local g
    for g in "${GROUPS_MADE[@]}"; do
        [ -d "$g" ] || continue
        # Processes left (a failed run): kill them, then remove the group.
        if [ -f "$g/cgroup.procs" ]; then
            while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$g/cgroup.procs"
        fi
        for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$g" 2>/dev/null && break; sleep 0.2; done
        [ -d "$g" ] && echo "warning: could not remove $g" >&2
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Makes a fresh group with the limit and no swap; prints its path.
make_group() {
    local g="$PARENT/respool-oom-$$-$1"
    mkdir "$g" || return 1
    GROUPS_MADE+=("$g")
    if [ "$VERSION" = 1 ]; then
        echo "$LIMIT" >"$g/memory.limit_in_bytes"
        [ -f "$g/memory.memsw.limit_in_bytes" ] && echo "$LIMIT" >"$g/memory.memsw.limit_in_bytes"
        [ -f "$g/memory.swappiness" ] && { echo 0 >"$g/memory.swappiness" 2>/dev/null || true; }
    else
        echo "$LIMIT" >"$g/memory.max"
        [ -f "$g/memory.swap.max" ] && echo 0 >"$g/memory.swap.max"
    fi
    echo "$g"
}

oom_kills() { # $1: group
    if [ "$VERSION" = 1 ]; then
        awk '$1 == "oom_kill" { print $2 }' "$1/memory.oom_control"
    else
        awk '$1 == "oom_kill" { print $2 }' "$1/memory.events"
    fi
}

peak_bytes() { # $1: group; "n/a" where the kernel has no peak (v2 before 5.19)
    if [ "$VERSION" = 1 ]; then
        cat "$1/memory.max_usage_in_bytes"
    elif [ -f "$1/memory.peak" ]; then
        cat "$1/memory.peak"
    else
        echo n/a
    fi
}

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
    sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$g" "$BIN" "$@" >"$log" 2>&1 || RC=$?
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
