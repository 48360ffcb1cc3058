#!/usr/bin/env bash
# Why: respool-observe with every feature (Prometheus, slow tasks, traces, the dashboard, OpenTelemetry with in-memory exporters and a loopback OTLP stub), its exposition checked by promtool, and the dashboard driven in a real headless browser.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p respool-observe --all-features
note() {
    if [ -n "${CI_STEP_NOTES:-}" ]; then echo "$1" >>"$CI_STEP_NOTES"; else echo "note: $1"; fi
}
# Each returns 77 when its tool is missing (said as a note, the rest still runs).
for check in ci/observe-promtool.sh ci/dashboard-browser.sh; do
    rc=0
    "$check" || rc=$?
    if [ "$rc" = 77 ]; then
        note "$check skipped itself (a tool is missing)"
    elif [ "$rc" != 0 ]; then
        echo "$check failed ($rc)" >&2
        exit "$rc"
    fi
done
