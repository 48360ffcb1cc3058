#!/usr/bin/env bash
# Why: proves respool-core links without std or alloc and that the code paths it exercises contain no reachable panic.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo tree: respool-core's normal dependencies (must be none)"
deps=$(cargo tree -p respool-core -e normal --prefix none | sort -u)
echo "$deps"
if [ "$(echo "$deps" | grep -vc '^respool-core ')" -ne 0 ]; then
    echo "respool-core has normal dependencies; each must be no_std without alloc" >&2
    exit 1
fi

cd core/nostd-check
echo "== build the #![no_std] #![no_main] binary (panic handler = undefined symbol)"
cargo build --release
bin=target/release/respool-nostd-check
if nm -C "$bin" | grep -E ' (std|alloc)::' >/dev/null; then
    echo "the binary contains std or alloc symbols:" >&2
    nm -C "$bin" | grep -E ' (std|alloc)::' | head >&2
    exit 1
fi
"$bin"

echo "== negative control: a binary with a deliberate panic path must fail to link"
if out=$(cargo build --release --features panic-canary 2>&1); then
    echo "the panic canary linked: the no-panic check is not working" >&2
    exit 1
fi
echo "$out" | grep respool_core_has_a_reachable_panic_path >/dev/null
echo "ok: the canary failed to link on respool_core_has_a_reachable_panic_path"
