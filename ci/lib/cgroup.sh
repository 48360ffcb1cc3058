# shellcheck shell=bash disable=SC2034 # sourced: its variables are read by the caller
# Memory cgroups for the scripts that need a real one (ci/oom-stress.sh,
# benches/run_vs_peers.sh): sourced, not run. Needs root (or a delegated
# cgroup v2 subtree).
#
#   cgroup_detect            sets CG_VERSION (1 or 2) and CG_PARENT, or
#                            returns 1 with the reason in CG_WHY
#   cgroup_make NAME BYTES   makes a fresh group limited to BYTES, no swap;
#                            prints its path (removed by cgroup_cleanup)
#   cgroup_run GROUP CMD...  runs CMD in GROUP (it joins before exec)
#   cgroup_oom_kills GROUP   the group's OOM kills so far
#   cgroup_peak GROUP        its peak memory in bytes ("n/a" where the kernel
#                            keeps none: v2 before Linux 5.19)
#   cgroup_cleanup           kills what is left in the groups made, removes them

CG_VERSION=""
CG_PARENT=""
CG_WHY=""
# The groups made, one path a line (a file: cgroup_make usually runs in a
# command substitution's subshell).
CG_MADE_FILE=$(mktemp)

_cg_self_path() { # $1: "memory" (v1) or "" (v2): this shell's group path
    if [ -n "$1" ]; then
        awk -F: -v c="$1" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' /proc/self/cgroup
    else
        awk -F: '$1 == "0" && $2 == "" { print $3 }' /proc/self/cgroup
    fi
}

_cg_v2_parent() { # $1: v2 mount point; prints a parent under which children get memory.max
    local mnt=$1 path dir
    path=$(_cg_self_path "")
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

cgroup_detect() {
    if [ "$(uname -s)" != Linux ]; then
        CG_WHY="not Linux (memory cgroups are Linux-only)"
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        CG_WHY="not root (creating a memory cgroup needs root)"
        return 1
    fi
    # Pure v2 at /sys/fs/cgroup, else v1, else a v2 mount (hybrid) that has
    # the memory controller.
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        CG_VERSION=2
        CG_PARENT=$(_cg_v2_parent /sys/fs/cgroup) || {
            CG_WHY="cgroup v2 at /sys/fs/cgroup without a memory controller this process can delegate"
            return 1
        }
    elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
        CG_VERSION=1
        CG_PARENT="/sys/fs/cgroup/memory$(_cg_self_path memory)"
        CG_PARENT=${CG_PARENT%/}
    else
        local mnt
        mnt=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
        if [ -n "$mnt" ] && CG_PARENT=$(_cg_v2_parent "$mnt"); then
            CG_VERSION=2
        else
            CG_WHY="no memory cgroup controller (neither v1 nor v2) is mounted"
            return 1
        fi
    fi
    if [ ! -w "$CG_PARENT" ]; then
        CG_WHY="$CG_PARENT is not writable"
        return 1
    fi
}

cgroup_make() { # $1: name, $2: limit in bytes
    local g="$CG_PARENT/$1"
    mkdir "$g" || return 1
    echo "$g" >>"$CG_MADE_FILE"
    if [ "$CG_VERSION" = 1 ]; then
        echo "$2" >"$g/memory.limit_in_bytes"
        [ -f "$g/memory.memsw.limit_in_bytes" ] && echo "$2" >"$g/memory.memsw.limit_in_bytes"
        [ -f "$g/memory.swappiness" ] && { echo 0 >"$g/memory.swappiness" 2>/dev/null || true; }
    else
        echo "$2" >"$g/memory.max"
        [ -f "$g/memory.swap.max" ] && echo 0 >"$g/memory.swap.max"
    fi
    echo "$g"
}

cgroup_run() { # $1: group, then the command
    local g=$1
    shift
    # The child joins the group before exec, so everything it allocates is charged there.
    sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$g" "$@"
}

cgroup_oom_kills() {
    if [ "$CG_VERSION" = 1 ]; then
        awk '$1 == "oom_kill" { print $2 }' "$1/memory.oom_control"
    else
        awk '$1 == "oom_kill" { print $2 }' "$1/memory.events"
    fi
}

cgroup_peak() {
    if [ "$CG_VERSION" = 1 ]; then
        cat "$1/memory.max_usage_in_bytes"
    elif [ -f "$1/memory.peak" ]; then
        cat "$1/memory.peak"
    else
        echo n/a
    fi
}

cgroup_cleanup() {
    local g p
    [ -f "$CG_MADE_FILE" ] || return 0
    while read -r g; do
        [ -d "$g" ] || continue
        # Processes left (a failed run): kill them, then remove the group.
        if [ -f "$g/cgroup.procs" ]; then
            while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$g/cgroup.procs"
        fi
        for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$g" 2>/dev/null && break; sleep 0.2; done
        if [ -d "$g" ]; then echo "warning: could not remove $g" >&2; fi
    done <"$CG_MADE_FILE"
    rm -f "$CG_MADE_FILE"
}
