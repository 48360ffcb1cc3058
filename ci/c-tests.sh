#!/usr/bin/env bash
# Why: the C ABI is only proven from C. This builds the release library once,
# stages it as librespool.a / librespool.so (bindings/stage.sh), and compiles
# and runs against those real artifacts: the C tests (static and shared),
# the panic test (a test build with feature "test-panic"), the C++ tests
# (two translation units), the example (the README's lines as written,
# which example.c's comment repeats, and CMake through the install script
# and pkg-config); then the C and C++ tests again
# under AddressSanitizer (C side; and the Rust side too with nightly
# -Zsanitizer=address when available) and under valgrind memcheck.
# Exits non-zero on any failure.
#
# Environment: RESPOOL_RUST_ASAN=0 skips the nightly Rust-side ASan build;
# RESPOOL_VALGRIND=0 skips valgrind; RESPOOL_C_BUILD_ONLY=1 stops after
# compiling the tests into target/c/tests (ci/stress-tests.sh runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
stage=target/c
out=target/c/tests
mkdir -p "$out"
# The panic test prints the panics it provokes; keep them to one line each.
export RUST_BACKTRACE=0

start=$SECONDS
step() { printf '\n== [%3ds] %s\n' "$((SECONDS - start))" "$*"; }
# A part skipped: reported by ci/all.sh with the step (see its convention).
note() {
    if [ -n "${CI_STEP_NOTES:-}" ]; then
        echo "$*" >>"$CI_STEP_NOTES"
    fi
}

step "build and stage the release library (and the test-panic variant)"
# The test variant first, so that target/release ends with the release one.
CARGO_FEATURES=test-panic bindings/stage.sh target/c-test-panic
bindings/stage.sh "$stage"
native="$(cat "$stage/lib/native-static-libs.txt")"
read -r -a native_libs <<<"$native"

# The header's version is the workspace's (ffi/src/lib.rs checks it at
# compile time; this checks the committed header).
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
header_version="$(awk '/#define RESPOOL_VERSION_(MAJOR|MINOR|PATCH) /{v = v sep $3; sep = "."} END {print v}' include/respool.h)"
if [ "$header_version" != "$version" ]; then
    echo "include/respool.h has version $header_version, the workspace $version" >&2
    exit 1
fi

cflags=(-std=c11 -Wall -Wextra -Werror -g -Iinclude)
cxxflags=(-std=c++17 -Wall -Wextra -Werror -g -Iinclude)
static_lib=("$stage/lib/librespool.a" "${native_libs[@]}")
shared_lib=(-L"$stage/lib" -lrespool -Wl,-rpath,"$root/$stage/lib" -lpthread -ldl -lm)
panic_lib=(target/c-test-panic/lib/librespool.a "${native_libs[@]}")
cpp_sources=(bindings/tests/test_cpp_a.cpp bindings/tests/test_cpp_b.cpp)

step "compile (gcc/g++ -Wall -Wextra -Werror)"
gcc "${cflags[@]}" bindings/tests/test_c_api.c "${static_lib[@]}" -o "$out/test_c_api"
gcc "${cflags[@]}" bindings/tests/test_c_api.c "${shared_lib[@]}" -o "$out/test_c_api_shared"
gcc "${cflags[@]}" bindings/tests/test_panic.c "${panic_lib[@]}" -o "$out/test_panic"
g++ "${cxxflags[@]}" "${cpp_sources[@]}" "${static_lib[@]}" -o "$out/test_cpp"
# The example without a warning (the README's lines below build it as a
# newcomer would, without warning flags).
cc -std=c11 -Wall -Wextra -Werror bindings/c/example.c -Iinclude "$stage/lib/librespool.a" \
    $native -o "$out/example_static"
# The shared library exports the C API and nothing else.
if nm -D --defined-only "$stage/lib/librespool.so" | awk '$2 == "T" && $3 !~ /^respool_/' | grep .; then
    echo "librespool.so exports symbols outside the respool_ prefix" >&2
    exit 1
fi
# (grep reads all its input: `grep -q` could quit early and fail the
# pipeline under pipefail with the writer's SIGPIPE.)
readelf -d "$stage/lib/librespool.so" | grep 'SONAME.*\[librespool\.so\.0\]' >/dev/null
if [ "${RESPOOL_C_BUILD_ONLY:-0}" = 1 ]; then
    step "built (RESPOOL_C_BUILD_ONLY=1: nothing run)"
    exit 0
fi

step "run"
# A configuration error is an error code, never a panic: the C API tests
# leave stderr free of Rust panic messages (test_panic.c provokes its own).
if ! (cd "$out" && ./test_c_api 2>test_c_api.stderr); then
    cat "$out/test_c_api.stderr" >&2
    exit 1
fi
if grep -E "panicked at|stack backtrace" "$out/test_c_api.stderr" >&2; then
    echo "test_c_api printed a Rust panic on stderr (above)" >&2
    exit 1
fi
(cd "$out" && ./test_c_api_shared)
ldd "$out/test_c_api_shared" | grep "librespool.so.0 => $root/$stage/lib/librespool.so.0" >/dev/null
(cd "$out" && ./test_panic)
(cd "$out" && ./test_cpp)

step "the README's C lines, as written (the same as example.c's comment)"
# Between the c-build markers: the README's sh block, and the comment's
# lines (after " *   "). They must agree, and they run as they are, from the
# repository root, without LD_LIBRARY_PATH, writing nothing outside target/.
readme_lines="$(sed -n '/^<!-- c-build:begin -->$/,/^<!-- c-build:end -->$/p' README.md | sed '1,2d;$d' | sed '$d')"
comment_lines="$(sed -n '/^ \* c-build:begin$/,/^ \* c-build:end$/p' bindings/c/example.c | sed '1d;$d' | sed -e 's/^ \*   //' -e 's/^ \*$//')"
if [ -z "$readme_lines" ] || [ "$readme_lines" != "$comment_lines" ]; then
    diff <(printf '%s\n' "$readme_lines") <(printf '%s\n' "$comment_lines") >&2 || true
    echo "README.md's C lines (c-build markers) and bindings/c/example.c's comment differ (above)" >&2
    exit 1
fi
# (Outside a git checkout there is nothing to compare: both are empty.)
untracked() { git status --porcelain --untracked-files=all 2>/dev/null || true; }
untracked_before="$(untracked)"
log="$out/readme-lines.log"
if ! env -u LD_LIBRARY_PATH bash -euo pipefail -c "$readme_lines" >"$log" 2>&1; then
    cat "$log" >&2
    echo "README.md's C lines failed (above)" >&2
    exit 1
fi
ldd target/c/example-shared | grep "librespool.so.0 => $root/target/c/lib/librespool.so.0" >/dev/null
untracked_after="$(untracked)"
if [ "$untracked_before" != "$untracked_after" ]; then
    echo "README.md's C lines left files outside target/:" >&2
    diff <(printf '%s\n' "$untracked_before") <(printf '%s\n' "$untracked_after") >&2 || true
    exit 1
fi
echo "ran the README's C lines (static and shared example)"

step "install (DESTDIR) and build the CMake example through pkg-config"
dest="$root/$out/destdir"
rm -rf "$dest" "$out/cmake-build"
DESTDIR="$dest" PREFIX=/opt/respool bindings/install.sh "$stage" >/dev/null
test -f "$dest/opt/respool/include/respool.h" -a -f "$dest/opt/respool/include/respool.hpp"
test -L "$dest/opt/respool/lib/librespool.so.0"
grep -q "^prefix=/opt/respool$" "$dest/opt/respool/lib/pkgconfig/respool.pc"
# The .pc names the installed prefix; point pkg-config at the DESTDIR copy.
export PKG_CONFIG_PATH="$dest/opt/respool/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$dest"
test "$(pkg-config --modversion respool)" = "$version"
cmake -S bindings/cmake-example -B "$out/cmake-build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$out/cmake-build" >/dev/null
(cd "$out" && ./cmake-build/respool_example >/dev/null)
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

step "AddressSanitizer: C and C++ instrumented, Rust library built normally"
asan=(-fsanitize=address -fno-omit-frame-pointer)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1"
gcc "${cflags[@]}" "${asan[@]}" bindings/tests/test_c_api.c "${static_lib[@]}" -o "$out/test_c_api_asan"
gcc "${cflags[@]}" "${asan[@]}" bindings/tests/test_panic.c "${panic_lib[@]}" -o "$out/test_panic_asan"
g++ "${cxxflags[@]}" "${asan[@]}" "${cpp_sources[@]}" "${static_lib[@]}" -o "$out/test_cpp_asan"
(cd "$out" && ./test_c_api_asan && ./test_panic_asan && ./test_cpp_asan)
# The runs above prove something only if ASan sees through the library:
# a handle freed twice and a leaked handle must be reported.
gcc "${cflags[@]}" "${asan[@]}" bindings/tests/canary.c "${static_lib[@]}" -o "$out/canary_asan"
expect_failure() { # expect_failure PATTERN COMMAND...: COMMAND fails and prints PATTERN
    local pattern="$1" log
    shift
    log="$(mktemp)"
    if "$@" >"$log" 2>&1; then
        echo "expected a failure from: $*" >&2
        rm -f "$log"
        exit 1
    fi
    if ! grep -q "$pattern" "$log"; then
        cat "$log" >&2
        echo "expected \"$pattern\" from: $*" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    echo "caught as expected: $* ($pattern)"
}
expect_failure "attempting double-free" "$out/canary_asan" double-free
expect_failure "detected memory leaks" "$out/canary_asan" leak

if [ "${RESPOOL_RUST_ASAN:-1}" != 0 ] && cargo +nightly --version >/dev/null 2>&1; then
    step "AddressSanitizer: the Rust library instrumented too (nightly -Zsanitizer=address)"
    # Its own target dir: the sanitizer flag rebuilds every crate. std is not
    # instrumented (no rust-src for -Zbuild-std here); respool and its
    # dependencies are. gcc's libasan provides the runtime (same ABI, v8).
    CARGO_TARGET_DIR=target/c-asan RUSTFLAGS="-Zsanitizer=address" \
        cargo +nightly rustc -q -p respool-ffi --release --lib --crate-type staticlib \
        --target x86_64-unknown-linux-gnu
    rust_asan_lib=(target/c-asan/x86_64-unknown-linux-gnu/release/librespool_ffi.a "${native_libs[@]}")
    gcc "${cflags[@]}" "${asan[@]}" bindings/tests/test_c_api.c "${rust_asan_lib[@]}" \
        -o "$out/test_c_api_asan_rust"
    g++ "${cxxflags[@]}" "${asan[@]}" "${cpp_sources[@]}" "${rust_asan_lib[@]}" \
        -o "$out/test_cpp_asan_rust"
    (cd "$out" && ./test_c_api_asan_rust && ./test_cpp_asan_rust)
    # Only an instrumented Rust side sees the library write to freed memory.
    gcc "${cflags[@]}" "${asan[@]}" bindings/tests/canary.c "${rust_asan_lib[@]}" \
        -o "$out/canary_asan_rust"
    expect_failure "heap-use-after-free" "$out/canary_asan_rust" use-after-free
else
    step "AddressSanitizer on the Rust side: skipped (no nightly, or RESPOOL_RUST_ASAN=0)"
    note "AddressSanitizer on the Rust side (no nightly, or RESPOOL_RUST_ASAN=0)"
fi
unset ASAN_OPTIONS

if [ "${RESPOOL_VALGRIND:-1}" != 0 ]; then
    step "valgrind memcheck (zero errors, no definite or indirect leak)"
    # No suppression file: nothing needs suppressing. "Possibly lost" blocks
    # are not errors here: they are the Rust runtime's per-thread handles of
    # the main thread, alive until exit (std::thread::current).
    vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
        --show-leak-kinds=definite,indirect)
    (cd "$out" && "${vg[@]}" ./test_c_api)
    (cd "$out" && "${vg[@]}" ./test_panic)
    (cd "$out" && "${vg[@]}" ./test_cpp)
    (cd "$out" && "${vg[@]}" ./example_static >/dev/null)
    gcc "${cflags[@]}" bindings/tests/canary.c "${static_lib[@]}" -o "$out/canary"
    expect_failure "Invalid free" "${vg[@]}" "$out/canary" double-free
    expect_failure "definitely lost" "${vg[@]}" "$out/canary" leak
else
    step "valgrind: skipped (RESPOOL_VALGRIND=0)"
    note "valgrind (RESPOOL_VALGRIND=0)"
fi

step "all C/C++ checks passed"
