#!/usr/bin/env bash
# Why: the whole test suite in one command (README's test command; .ci/run calls it): installs what it needs, then runs every check below.
#
# Each step is a script of its own that anyone can run alone. Skip steps with
# CI_SKIP="fuzz coverage" (for a quick local run); CI skips nothing.
#
# How a step reports (the convention every ci/*.sh follows):
#   exit 0   passed;
#   exit 77  skipped itself: a prerequisite this machine lacks (the automake
#            convention; e.g. ci/oom-stress.sh without root or without a
#            memory cgroup it may create). The summary says "skipped", never
#            "ok", with the reason;
#   other    failed: the summary of the steps so far (with the failed one's
#            time) is printed and this script exits 1.
# A step writes the reason for a skip, or for a part of itself it skipped
# (ci/c-tests.sh without nightly), as one line to the file named by
# $CI_STEP_NOTES when that is set; run alone, it prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Disk: a cold run builds about a dozen target directories (debug, release,
# ASan, loom, coverage, the C tests, the operator's own workspace). CI gains
# nothing from incremental caches, and line tables are all its backtraces,
# ASan and valgrind reports need, so both are cut here; the summary prints
# what the run used. Set either variable yourself to override.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"

steps=(
    install-tools # apt packages and pinned cargo tools
    fmt           # formatting
    clippy        # lints as errors, all targets, with and without features
    doc           # docs without warnings
    guide         # the user guide: built without warnings, links checked, every example run
    diagrams      # the architecture diagrams match their Graphviz sources
    public-api    # each crate's public API equals its committed listing
    test          # unit, integration, property and doc tests
    loom          # model-checked concurrency of the tracker and admission
    nostd         # no_std, no alloc, no reachable panic (link-time proof)
    asan          # AddressSanitizer over the unsafe code's tests
    valgrind      # memcheck over the runtime's unit tests
    iai           # instruction counts with hard limits
    bench-build   # every benchmark and tool compiles
    fuzz          # every fuzz target, bounded time
    simulate      # placement simulator: utilisation and makespan targets
    c-tests       # the C ABI from C and C++, under ASan and valgrind
    stress-tests  # the concurrency tests, many times, with every core busy
    header-drift  # include/respool.h matches the code
    oom-stress    # zero OOM kills in a real memory cgroup
    accuracy      # learning accuracy on real work
    demo          # README's first command (and its other example) run as written
    examples      # every example of every crate runs and holds what it shows
    observe       # respool-observe: metrics (promtool), traces, slow tasks, OTel, the dashboard in a headless browser
    redis         # RedisStore against a real redis-server: concurrent learners, restarts, passwords
    exports       # learned requests as k8s/Slurm/HyperQueue/Ray, and deploy/, parsed and validated offline
    operator      # respool-operator (own workspace): lints, tests on a mocked API server, CRD drift, manifests validated offline
    monitor-overhead # monitoring under 0.1% of one CPU
    coverage      # line coverage of core, sys and runtime above 80%
)

# Free space on the filesystem that holds target/, in MiB.
free_mib() { df -Pm . | awk 'NR == 2 { print $4 }'; }
disk_start=$(free_mib)
if [ "$disk_start" -lt 16384 ]; then
    echo "warning: $((disk_start / 1024)) GiB free here; a cold run needs about 13 GiB (see README)" >&2
fi

notes="$(mktemp)"
trap 'rm -f "$notes"' EXIT
declare -a report=()
start=$(date +%s)

# One line of the summary: step, status, seconds (or blank), note.
line() {
    report+=("$(printf '%-17s %-8s %5s  %s' "$1" "$2" "$3" "$4" | sed 's/ *$//')")
}

summary() {
    echo
    echo "::::::::::::::::::::::::::::::::: summary"
    printf '%s\n' "${report[@]}"
    echo "disk: $((disk_start - $(free_mib))) MiB used by this run ($(free_mib) MiB free now)"
}

failed=""
for step in "${steps[@]}"; do
    if [ -n "$failed" ]; then
        line "$step" "not run" "" "(after the failure of $failed)"
        continue
    fi
    if [[ " ${CI_SKIP:-} " == *" $step "* ]]; then
        line "$step" skipped "" "CI_SKIP"
        continue
    fi
    echo
    echo "::::::::::::::::::::::::::::::::: $step"
    : >"$notes"
    t0=$(date +%s)
    status=0
    CI_STEP_NOTES="$notes" "ci/$step.sh" || status=$?
    secs="$(($(date +%s) - t0))s"
    note="$(paste -sd ';' "$notes" | sed 's/;/; /g')"
    case "$status" in
    0)
        line "$step" ok "$secs" "${note:+partly skipped: $note}"
        ;;
    77)
        line "$step" skipped "$secs" "${note:-the script gave no reason}"
        ;;
    *)
        line "$step" FAILED "$secs" "exit $status${note:+; partly skipped: $note}"
        failed="$step"
        ;;
    esac
done
summary
if [ -n "$failed" ]; then
    echo
    echo "FAILED: ci/$failed.sh after $(($(date +%s) - start))s (run it alone to reproduce)" >&2
    exit 1
fi
if printf '%s\n' "${report[@]}" | grep -E '^\S+ +skipped' >/dev/null; then
    echo "all checks that ran passed in $(($(date +%s) - start))s; some were skipped (above)"
else
    echo "all checks passed in $(($(date +%s) - start))s"
fi
