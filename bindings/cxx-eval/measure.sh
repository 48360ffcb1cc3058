#!/usr/bin/env bash
# Why: the numbers behind CONTRIBUTING.md's "cxx" decision. Builds the same
# C++ program two ways, through include/respool.hpp over the C ABI
# (librespool.a, what users get today) and through this cxx bridge, and
# prints what a C++ user pays for each: the build (cargo and cxx-build at
# the user's build, CPU seconds), the user's own compile, the size of the
# linked program, and the instructions per task (callgrind, all threads, the
# difference between 1000 and 5000 tasks divided by 4000). Runs
# tests/test_cxx.cpp too (callables, rust::String errors, exceptions).
# Not a CI step: the bridge is not shipped (see CONTRIBUTING.md).
#
# Environment: MEASURE_BUILD=1 also times a cold build of the bridge in a
# fresh target directory (respool first, then what the bridge adds).
set -euo pipefail
cd "$(dirname "$0")/../.."
td="${CARGO_TARGET_DIR:-$PWD/target}"
cxx_td="$td/cxx-eval"
out="$td/cxx-eval-out"
mkdir -p "$out"
manifest=bindings/cxx-eval/Cargo.toml
cpu() { # cpu LABEL COMMAND...: runs COMMAND, prints its user+sys CPU seconds
    local label=$1 t
    shift
    t="$(mktemp)"
    /usr/bin/time -f "%U %S" -o "$t" "$@" >/dev/null 2>"$t.err" || { cat "$t.err" >&2; exit 1; }
    awk -v l="$label" '{printf "%-58s %7.1f s CPU\n", l, $1 + $2}' "$t"
    rm -f "$t" "$t.err"
}

echo "== build"
if [ "${MEASURE_BUILD:-0}" = 1 ]; then
    rm -rf "$cxx_td" "$td/cxx-eval-ffi"
    cpu "cargo: respool (release), shared by both" \
        cargo build --release --manifest-path "$manifest" --target-dir "$cxx_td" -p respool
    cpu "cargo: what the bridge adds (cxx, cxx-build, C++ codegen)" \
        cargo build --release --manifest-path "$manifest" --target-dir "$cxx_td"
    cargo build -q --release -p respool --target-dir "$td/cxx-eval-ffi"
    cpu "cargo: what the C ABI adds (respool-ffi)" \
        cargo build --release -p respool-ffi --target-dir "$td/cxx-eval-ffi"
    rm -rf "$td/cxx-eval-ffi"
fi
crates() { cargo tree "$@" -e normal,build --prefix none | awk '{print $1}' | sort -u; }
echo "crates the bridge adds to respool-ffi's build:" \
    $(comm -13 <(crates -p respool-ffi) <(crates --manifest-path "$manifest"))
cargo build -q --release --manifest-path "$manifest" --target-dir "$cxx_td"
bindings/stage.sh "$td/c" >/dev/null
read -r -a native <<<"$(cat "$td/c/lib/native-static-libs.txt")"
hpp_lib=("$td/c/lib/librespool.a" "${native[@]}")
cxx_lib=("$cxx_td/release/librespool_cxx_eval.a" "${native[@]}")
# cxx-build leaves the generated header, rust/cxx.h and a link to the
# crate (for include/respool_cxx.hpp) in the build script's OUT_DIR.
bridge="$(ls -dt "$cxx_td"/release/build/respool-cxx-eval-*/out/cxxbridge | head -n 1)"
cxx_inc=(-I"$bridge/include" -I"$bridge/crate")
flags=(-std=c++17 -O2 -Wall -Wextra -Werror)

echo "== the user's compile and link (g++ -O2, one translation unit)"
cpu "respool.hpp over the C ABI" \
    g++ "${flags[@]}" -Iinclude bindings/cxx-eval/tests/percall_hpp.cpp "${hpp_lib[@]}" -o "$out/percall_hpp"
cpu "cxx bridge" \
    g++ "${flags[@]}" "${cxx_inc[@]}" bindings/cxx-eval/tests/percall_cxx.cpp "${cxx_lib[@]}" -o "$out/percall_cxx"
g++ "${flags[@]}" "${cxx_inc[@]}" bindings/cxx-eval/tests/test_cxx.cpp "${cxx_lib[@]}" -o "$out/test_cxx"
"$out/test_cxx"

echo "== sizes (bytes)"
for f in "$td/c/lib/librespool.a" "$cxx_td/release/librespool_cxx_eval.a"; do
    printf "%-58s %9d\n" "$(basename "$f")" "$(stat -c %s "$f")"
done
for p in percall_hpp percall_cxx; do
    strip -o "$out/$p.stripped" "$out/$p"
    printf "%-58s %9d\n" "$p (linked, stripped)" "$(stat -c %s "$out/$p.stripped")"
done

echo "== instructions per task (callgrind, submit + run + wait, one worker)"
ir() { # ir PROGRAM N: total instructions of all threads
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$out/$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    rm -f "$out"/cg.*
}
for p in percall_hpp percall_cxx; do
    small=$(ir "$p" 1000)
    big=$(ir "$p" 5000)
    printf "%-58s %9d\n" "$p" "$(((big - small) / 4000))"
done
