#!/usr/bin/env bash
# Why: installs the C library the way C build systems look for it: the
# static and shared library (with its soname links), respool.h and
# respool.hpp, and a pkg-config file (respool.pc) that CMake, Meson and
# Makefiles can use.
#
# Usage: [PREFIX=/usr/local] [LIBDIR=$PREFIX/lib] [INCLUDEDIR=$PREFIX/include]
#        [DESTDIR=/staging/root] bindings/install.sh [STAGE]
# STAGE is what bindings/stage.sh produced (default target/c; staged first
# if missing). DESTDIR is prepended to every installed path but not written
# into respool.pc, as packagers expect.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-target/c}"
prefix="${PREFIX:-/usr/local}"
libdir="${LIBDIR:-$prefix/lib}"
includedir="${INCLUDEDIR:-$prefix/include}"
dest="${DESTDIR:-}"

if [ ! -f "$stage/lib/librespool.a" ]; then
    bindings/stage.sh "$stage"
fi
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
major="${version%%.*}"
native="$(cat "$stage/lib/native-static-libs.txt")"

install -d "$dest$libdir/pkgconfig" "$dest$includedir"
install -m 644 "$stage/lib/librespool.a" "$dest$libdir/librespool.a"
install -m 755 "$stage/lib/librespool.so.$version" "$dest$libdir/librespool.so.$version"
ln -sfn "librespool.so.$version" "$dest$libdir/librespool.so.$major"
ln -sfn "librespool.so.$major" "$dest$libdir/librespool.so"
install -m 644 include/respool.h include/respool.hpp "$dest$includedir/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" -e "s|@NATIVE_STATIC_LIBS@|$native|" \
    bindings/respool.pc.in >"$dest$libdir/pkgconfig/respool.pc"
echo "installed respool $version under $dest$prefix"
