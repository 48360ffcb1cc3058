#!/usr/bin/env bash
# Why: Prometheus must accept respool's metrics exposition: `promtool check metrics` (Debian's `prometheus` package) lints the text from a real pool run (observe/examples/metrics_text.rs) in the classic Prometheus text format that /metrics serves by default, and finds no syntax error in the OpenMetrics text either.
#
# promtool 2.42 reads the classic text format only. It accepts
# prometheus-client's OpenMetrics text (it skips `# EOF`), but lints every
# counter there as "no help text": OpenMetrics names a counter family `x`
# (`# TYPE x counter`) and its sample `x_total`, which the classic parser
# takes for another metric. So the lint runs on the Prometheus text format
# (`Format::Prometheus`, served to scrapers that do not ask for OpenMetrics
# in `Accept`), and on the OpenMetrics text only that one known remark may
# appear. A machine without promtool skips this check: exit 77.
set -euo pipefail
cd "$(dirname "$0")/.."

# Skipped, with the reason, as ci/all.sh reports it (see the top of all.sh).
skip() {
    echo "SKIP observe-promtool: $*"
    if [ -n "${CI_STEP_NOTES:-}" ]; then
        echo "$*" >>"$CI_STEP_NOTES"
    fi
    exit 77
}

command -v promtool >/dev/null 2>&1 || skip "promtool not found (Debian: apt-get install prometheus)"


out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build -q -p respool-observe --example metrics_text
bin=target/debug/examples/metrics_text
"$bin" --prometheus >"$out/prometheus.txt"
"$bin" >"$out/openmetrics.txt"

for f in prometheus openmetrics; do
    test -s "$out/$f.txt" || { echo "empty $f exposition" >&2; exit 1; }
    grep -q '^respool_tasks_submitted_total ' "$out/$f.txt" || { echo "no respool_tasks_submitted_total in $f" >&2; exit 1; }
done

# The Prometheus text format: no remark at all.
if ! promtool check metrics <"$out/prometheus.txt"; then
    echo "promtool rejects the Prometheus text format exposition" >&2
    exit 1
fi

# The OpenMetrics text: parsed (exit 1 is a parse error), and nothing but
# the counters' "no help text" (exit 3 is lint remarks).
set +e
remarks=$(promtool check metrics <"$out/openmetrics.txt" 2>&1)
rc=$?
set -e
case $rc in
    0) ;;
    3)
        unexpected=$(echo "$remarks" | grep -v -E '^respool_[a-z0-9_]+_total no help text$' || true)
        if [ -n "$unexpected" ]; then
            echo "$unexpected"
            echo "promtool remarks on the OpenMetrics exposition beyond counters' help text" >&2
            exit 1
        fi
        ;;
    *)
        echo "$remarks"
        echo "promtool cannot parse the OpenMetrics exposition (exit $rc)" >&2
        exit 1
        ;;
esac
echo "promtool: $(wc -l <"$out/prometheus.txt") lines of Prometheus text ok; OpenMetrics text parsed"
