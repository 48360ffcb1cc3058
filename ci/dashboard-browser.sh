#!/usr/bin/env bash
# Why: proves the live dashboard in a real browser (headless Debian chromium through chromedriver): refused without the token, live values matching /api/state within one refresh, updates as tasks start and finish, no console errors; saves docs/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."

# A machine where this cannot run skips it: exit 77 with the reason, which
# ci/all.sh reports as "skipped" (see the convention at the top of all.sh).
skip() {
    echo "SKIP dashboard-browser: $*"
    if [ -n "${CI_STEP_NOTES:-}" ]; then
        echo "$*" >>"$CI_STEP_NOTES"
    fi
    exit 77
}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
[ -x "$CHROMIUM" ] || skip "no chromium at $CHROMIUM (Debian package chromium)"
[ -x "$CHROMEDRIVER" ] || skip "no chromedriver at $CHROMEDRIVER (Debian package chromium-driver)"
command -v python3 >/dev/null || skip "no python3"

SCREENSHOT=${RESPOOL_DASHBOARD_SCREENSHOT:-docs/dashboard.png}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cargo build -p respool-observe --features dashboard --example dashboard
example=target/debug/examples/dashboard

# The workload: deterministic (a fixed seed), busy until killed, refreshing
# twice a second.
"$example" --forever --seed 7 --refresh-ms 500 >"$work/example.out" 2>"$work/example.err" &
pids+=($!)
url=""
for _ in $(seq 1 600); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/?token=[0-9a-f]*' "$work/example.err" | head -n1 || true)
    [ -n "$url" ] && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/example.err"; echo "the example exited"; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { cat "$work/example.err"; echo "the example printed no URL"; exit 1; }
echo "dashboard at ${url%%\?*}"

# chromedriver on a free port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CHROMEDRIVER" --port="$port" >"$work/chromedriver.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    python3 - "$port" <<'PY' && break
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=2) as r:
        sys.exit(0 if json.loads(r.read())["value"]["ready"] else 1)
except Exception:
    sys.exit(1)
PY
    sleep 0.1
done

mkdir -p "$(dirname "$SCREENSHOT")"
if ! python3 ci/dashboard_browser.py --driver "http://127.0.0.1:$port" --url "$url" \
    --screenshot "$SCREENSHOT"; then
    echo "--- example stderr"; tail -n 40 "$work/example.err"
    echo "--- chromedriver"; tail -n 40 "$work/chromedriver.log"
    exit 1
fi
echo "dashboard-browser: ok"
