#!/usr/bin/env bash
# Why: include/respool.h is generated from ffi/src by a pinned cbindgen and
# committed, so that C users need no Rust tooling. This regenerates it into a
# temporary file and fails on any difference (a changed signature, doc or
# constant that was not regenerated), and checks that the header's version
# macros are the workspace version.
set -euo pipefail
cd "$(dirname "$0")/.."

want=0.29.4
have="$(cbindgen --version 2>/dev/null | awk '{print $2}')" || true
if [ "$have" != "$want" ]; then
    echo "cbindgen $want is needed (found: ${have:-none}):" >&2
    echo "  cargo install cbindgen --version $want --locked" >&2
    exit 1
fi

tmp="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$tmp" "$log"' EXIT
if ! cbindgen --config ffi/cbindgen.toml --crate respool-ffi --output "$tmp" ffi 2>"$log"; then
    cat "$log" >&2
    exit 1
fi
# cbindgen notes every private constant it skips (the compile-time checks,
# `respool_result::ALL`); show anything else.
grep -v '(not `pub`)\.$' "$log" >&2 || true

if ! diff -u include/respool.h "$tmp"; then
    echo >&2
    echo "include/respool.h differs from what ffi/src generates; regenerate it:" >&2
    echo "  cbindgen --config ffi/cbindgen.toml --crate respool-ffi --output include/respool.h ffi" >&2
    exit 1
fi

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
header_version="$(awk '/#define RESPOOL_VERSION_(MAJOR|MINOR|PATCH) /{v = v sep $3; sep = "."} END {print v}' include/respool.h)"
if [ "$header_version" != "$version" ]; then
    echo "include/respool.h has version $header_version, the workspace $version:" >&2
    echo "  update RESPOOL_VERSION_* in ffi/src/lib.rs and regenerate the header" >&2
    exit 1
fi
echo "include/respool.h is up to date (version $version)"
