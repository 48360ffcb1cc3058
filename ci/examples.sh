#!/usr/bin/env bash
# Why: every example of every crate is documentation a user copies, so each must build and run to success (each checks what it shows and exits non-zero otherwise); examples are discovered from `cargo metadata`, so a new one is run without editing this script.
#
#   ci/examples.sh            build (release) and run every example
#   ci/examples.sh NAME...    only the examples with these names
#
# An example that needs a cargo feature runs with its `required-features`.
# An example that needs arguments gets them from `args_for` below, with the
# reason; one that cannot run here is listed in `skip_reason`, with the
# reason, and reported as skipped (never silently). Release builds: several
# examples do real work (sorting, compressing, allocating hundreds of MiB)
# that takes minutes unoptimised. The C and C++ examples (bindings/c/example.c,
# bindings/cmake-example/) are not cargo examples: ci/c-tests.sh builds and
# runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

note() {
    if [ -n "${CI_STEP_NOTES:-}" ]; then echo "$1" >>"$CI_STEP_NOTES"; else echo "note: $1"; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The arguments an example is run with (one per line), and why.
args_for() {
    case "$1/$2" in
    respool/demo)
        # Its own profile directory, fresh, so a run never depends on an
        # earlier one (ci/demo.sh runs it as README shows, twice).
        printf '%s\n' --dir "$tmp/demo" --fresh ;;
    respool/oom_stress)
        # It needs a mode. `declared`, small: the other modes are meant for
        # a memory cgroup (`control` must be OOM-killed), which
        # ci/oom-stress.sh creates.
        printf '%s\n' declared --tasks 8 --workers 2 --min-mib 8 --max-mib 24 --hold-ms 20 ;;
    respool-sys/monitor_overhead)
        # 2 s at the default 1 s interval and 500 back-to-back samples
        # (default 15 s and 2000); ci/monitor-overhead.sh runs it longer.
        printf '%s\n' 2 1000 500 ;;
    respool-observe/dashboard)
        # It serves until killed by default; submit for 3 s, then exit.
        printf '%s\n' --seconds 3 ;;
    *) ;;
    esac
}

# Why an example cannot run here (empty: it runs).
skip_reason() {
    case "$1/$2" in
    *) ;;
    esac
}

# package<TAB>example<TAB>comma-separated required features, one line each.
cargo metadata --no-deps --format-version 1 >"$tmp/metadata.json"
python3 - "$tmp/metadata.json" >"$tmp/examples.tsv" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
members = set(meta["workspace_members"])
for p in sorted(meta["packages"], key=lambda p: p["name"]):
    if p["id"] not in members:
        continue
    for t in sorted(p["targets"], key=lambda t: t["name"]):
        if "example" in t["kind"]:
            print(p["name"], t["name"], ",".join(t.get("required-features", [])), sep="\t")
EOF
if [ ! -s "$tmp/examples.tsv" ]; then
    echo "ci/examples.sh: no example found" >&2
    exit 1
fi

# selected NAME [WANTED...]: whether example NAME is to run.
selected() {
    local name=$1 want
    shift
    [ "$#" -eq 0 ] && return 0
    for want in "$@"; do [ "$want" = "$name" ] && return 0; done
    return 1
}

# Build each package's examples once, with every feature its examples need
# (and run them with the same features, so nothing is rebuilt in between).
declare -A features=()
while IFS=$'\t' read -r pkg example feats; do
    selected "$example" "$@" || continue
    features[$pkg]="${features[$pkg]:-}${features[$pkg]:+,}$feats"
done <"$tmp/examples.tsv"
for pkg in $(printf '%s\n' "${!features[@]}" | sort); do
    f=$(echo "${features[$pkg]}" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
    features[$pkg]=$f
    echo "== build $pkg examples${f:+ (features $f)}"
    cargo build --release -q -p "$pkg" --examples ${f:+--features "$f"}
done

declare -a report=()
failed=0
while IFS=$'\t' read -r pkg example _; do
    selected "$example" "$@" || continue
    reason=$(skip_reason "$pkg" "$example")
    if [ -n "$reason" ]; then
        report+=("$(printf '%-16s %-20s skipped  %s' "$pkg" "$example" "$reason")")
        note "ci/examples.sh: $pkg example $example skipped: $reason"
        continue
    fi
    mapfile -t args < <(args_for "$pkg" "$example")
    echo "== $pkg: $example ${args[*]:-}"
    start=$(date +%s)
    rc=0
    # stdin closed: an example never waits for input.
    f=${features[$pkg]}
    cargo run --release -q -p "$pkg" --example "$example" ${f:+--features "$f"} -- "${args[@]}" \
        </dev/null >"$tmp/out" 2>&1 || rc=$?
    secs=$(($(date +%s) - start))
    tail -n 15 "$tmp/out"
    if [ "$rc" -eq 0 ]; then
        report+=("$(printf '%-16s %-20s ok %5ss' "$pkg" "$example" "$secs")")
    else
        report+=("$(printf '%-16s %-20s FAILED (exit %s, %ss)' "$pkg" "$example" "$rc" "$secs")")
        echo "== $pkg example $example FAILED (exit $rc); its whole output:" >&2
        cat "$tmp/out" >&2
        failed=1
    fi
done <"$tmp/examples.tsv"

echo
echo "== examples"
printf '%s\n' "${report[@]}"
exit "$failed"
