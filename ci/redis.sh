#!/usr/bin/env bash
# Why: RedisStore (profiles shared by many processes) against a real Redis: four learner processes lose no sample, a Redis that hangs or restarts never holds a task up and is caught up with, requirepass and ACL users, TLS with a CA of the test's own, corrupt and newer values left untouched.
#
# Installs Debian's redis-server when it is missing (as root, or with sudo),
# starts one on a free loopback port in a temporary directory for the
# concurrency test (the other tests start, stop and restart servers of their
# own with the same binary), and stops it on every exit path. Exits 77 with
# the reason when no redis-server can be had.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

skip() {
    if [ -n "${CI_STEP_NOTES:-}" ]; then echo "$1" >>"$CI_STEP_NOTES"; else echo "skipped: $1"; fi
    exit 77
}

if ! command -v redis-server >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo -n true 2>/dev/null || skip "no redis-server, and no root or sudo to install Debian's"
        sudo="sudo -n"
    fi
    command -v apt-get >/dev/null || skip "no redis-server, and no apt-get to install it"
    echo "== apt-get install redis-server"
    $sudo apt-get update -q || true
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server ||
        skip "apt-get could not install redis-server"
fi
server="$(command -v redis-server)"
redis-server --version

dir="$(mktemp -d)"
pid=""
stop() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap stop EXIT

# A free loopback port; a server that loses the race for it is retried on another.
for _ in 1 2 3 4 5; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$server" --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
        --daemonize no --logfile "$dir/redis.log" &
    pid=$!
    # Ready when it answers PING (or gone when it could not bind).
    for _ in $(seq 1 200); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then break 2; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
done
[ -n "$pid" ] || { cat "$dir/redis.log" >&2; echo "redis-server did not start" >&2; exit 1; }
echo "== redis-server $pid on 127.0.0.1:$port"

export RESPOOL_TEST_REDIS_URL="redis://127.0.0.1:$port/"
export RESPOOL_REDIS_SERVER="$server"
export RESPOOL_REQUIRE_REDIS=1
# redis-tls: the TLS test too (Debian's server is built with TLS; the test
# makes its own CA and certificate with openssl).
cargo test -j"${CARGO_BUILD_JOBS:-2}" -p respool --features redis-tls --test redis_store
cargo test -j"${CARGO_BUILD_JOBS:-2}" -p respool --features redis-tls --lib store::
# The store's doctests, and the guide's chapter on many machines (its Redis example
# uses $RESPOOL_TEST_REDIS_URL).
cargo test -j"${CARGO_BUILD_JOBS:-2}" -p respool --features redis-tls --doc -- store Fleet
