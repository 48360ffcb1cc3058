#!/usr/bin/env bash
# Why: the whole test suite in one command (README's test command; .ci/run calls it): installs what it needs, then runs every check below.
#
# Each step is a script of its own that anyone can run alone. Skip steps with
# CI_SKIP="fuzz coverage" (for a quick local run); CI skips nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

steps=(
    install-tools # apt packages and pinned cargo tools
    fmt           # formatting
    clippy        # lints as errors, all targets, with and without features
    doc           # docs without warnings
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
    monitor-overhead # monitoring under 0.1% of one CPU
    coverage      # line coverage of core and runtime above 80%
)

declare -a report=()
start=$(date +%s)
for step in "${steps[@]}"; do
    if [[ " ${CI_SKIP:-} " == *" $step "* ]]; then
        report+=("$(printf '%-17s skipped' "$step")")
        continue
    fi
    echo
    echo "::::::::::::::::::::::::::::::::: $step"
    t0=$(date +%s)
    if ! "ci/$step.sh"; then
        echo
        echo "FAILED: ci/$step.sh (run it alone to reproduce)" >&2
        exit 1
    fi
    report+=("$(printf '%-17s ok  %4ds' "$step" $(( $(date +%s) - t0 )))")
done
echo
echo "::::::::::::::::::::::::::::::::: summary"
printf '%s\n' "${report[@]}"
echo "all checks passed in $(( $(date +%s) - start ))s"
