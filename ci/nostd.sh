#!/usr/bin/env bash
# Why: proves respool-core links without std or alloc and that the code paths it exercises contain no reachable panic.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo tree: respool-core's normal dependencies (heapless and its own, no_std without alloc)"
# Each is no_std and used without default features; the link below proves
# that none pulls in std or alloc. A new one must be added here on purpose.
allowed="byteorder hash32 heapless respool-core stable_deref_trait"
deps=$(cargo tree -p respool-core -e normal --prefix none | awk '{print $1}' | sort -u)
echo "$deps"
unexpected=$(comm -23 <(echo "$deps") <(tr ' ' '\n' <<<"$allowed" | sort))
if [ -n "$unexpected" ]; then
    echo "respool-core has unexpected normal dependencies: $unexpected" >&2
    echo "(each must be no_std without alloc; add it to ci/nostd.sh's list)" >&2
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
