#!/usr/bin/env bash
# Why: cargo names the C library after the crate (librespool_ffi.*, so that it
# cannot collide with the Rust crate `respool` in target/ or in `cargo doc`);
# C users link against librespool. This builds the release staticlib and
# cdylib once and stages them, with the headers and the system libraries a
# static link needs, under one directory:
#
#   $STAGE/lib/librespool.a
#   $STAGE/lib/librespool.so.X.Y.Z, librespool.so.X -> .X.Y.Z, librespool.so -> .X
#   $STAGE/lib/native-static-libs.txt   (for `cc ... librespool.a $(cat ...)`)
#   $STAGE/include/respool.h, respool.hpp
#
# Usage: bindings/stage.sh [STAGE]   (default target/c)
# Environment: CARGO_FEATURES="test-panic" builds a test variant instead.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-target/c}"
target_dir="${CARGO_TARGET_DIR:-target}"

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
major="${version%%.*}"

features=()
if [ -n "${CARGO_FEATURES:-}" ]; then
    features=(--features "$CARGO_FEATURES")
fi
# `cargo rustc` so that rustc prints the native libraries of the staticlib;
# the flag is a print request only (the artifacts are the same as `cargo build`).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo rustc -p respool-ffi --release --lib "${features[@]}" -- --print native-static-libs 2>"$log" || {
    cat "$log" >&2
    exit 1
}
native="$(sed -n 's/.*native-static-libs: //p' "$log" | tail -n 1)"
if [ -z "$native" ]; then
    # Nothing was recompiled, so nothing was printed: keep the staged list.
    native="$(cat "$stage/lib/native-static-libs.txt" 2>/dev/null || echo "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")"
fi

mkdir -p "$stage/lib" "$stage/include"
rm -f "$stage"/lib/librespool.*
cp "$target_dir/release/librespool_ffi.a" "$stage/lib/librespool.a"
cp "$target_dir/release/librespool_ffi.so" "$stage/lib/librespool.so.$version"
ln -s "librespool.so.$version" "$stage/lib/librespool.so.$major"
ln -s "librespool.so.$major" "$stage/lib/librespool.so"
printf '%s\n' "$native" >"$stage/lib/native-static-libs.txt"
cp include/respool.h include/respool.hpp "$stage/include/"
echo "staged respool $version in $stage (static libs: $native)"
