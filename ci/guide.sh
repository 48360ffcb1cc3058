#!/usr/bin/env bash
# Why: the user guide (docs/guide, an mdBook) builds without a single warning, has no broken internal link or anchor (checked offline on the built HTML), and every Rust example in it compiles and runs as a doctest.
#
# The book is written to target/guide (docs/guide/book.toml). Its Rust
# examples are doctests of respool (std-runtime/src/lib.rs includes each
# chapter) and, for the observability chapter, of respool-observe.
# A machine without mdbook that cannot install it skips this step (exit 77).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Skipped, with the reason, as ci/all.sh reports it (see the top of all.sh).
skip() {
    echo "SKIP guide: $*"
    if [ -n "${CI_STEP_NOTES:-}" ]; then
        echo "$*" >>"$CI_STEP_NOTES"
    fi
    exit 77
}

# mdbook at the version ci/install-tools.sh pins (one place for the pin).
version=$(sed -n 's/^install_pinned mdbook \([0-9.]*\) .*/\1/p' ci/install-tools.sh)
[ -n "$version" ] || { echo "no mdbook pin found in ci/install-tools.sh" >&2; exit 1; }
if ! mdbook --version 2>/dev/null | grep -F "v$version" >/dev/null; then
    echo "== cargo install mdbook $version"
    cargo install mdbook --version "$version" --locked ||
        skip "mdbook $version is missing and could not be installed (cargo install mdbook --version $version --locked)"
fi
command -v python3 >/dev/null 2>&1 || skip "python3 not found (ci/guide_links.py checks the links)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== mdbook build docs/guide"
# mdbook exits 0 after a warning (an unclosed HTML tag) and after some
# errors (an {{#include}} of a missing file), so the log decides: any WARN
# or ERROR line fails. MDBOOK_LOG unset: the default level shows warnings.
rm -rf target/guide
status=0
(cd docs/guide && env -u MDBOOK_LOG NO_COLOR=1 mdbook build) >"$tmp/build.log" 2>&1 || status=$?
cat "$tmp/build.log"
if [ "$status" -ne 0 ]; then
    echo "mdbook build failed (exit $status)" >&2
    exit 1
fi
if grep -E '(^|[[:space:]])(WARN|ERROR)[[:space:]]' "$tmp/build.log" >/dev/null; then
    echo "mdbook printed warnings or errors (above): the guide must build without any" >&2
    exit 1
fi
[ -f target/guide/index.html ] || { echo "no target/guide/index.html after the build" >&2; exit 1; }

echo "== internal links and anchors (offline)"
# First on a fixture with one broken anchor and one missing page: a
# checker that finds nothing there is broken itself.
mkdir -p "$tmp/fixture"
printf '<h2 id="here">here</h2><a href="b.html#nowhere">x</a><a href="missing.html">y</a><a href="#here">z</a>\n' \
    >"$tmp/fixture/a.html"
printf '<h2 id="there">there</h2><a href="a.html#here">back</a>\n' >"$tmp/fixture/b.html"
if python3 ci/guide_links.py "$tmp/fixture" >"$tmp/fixture.log" 2>&1; then
    cat "$tmp/fixture.log"
    echo "the link checker passed a fixture with broken links" >&2
    exit 1
fi
grep -F "no id 'nowhere' in b.html" "$tmp/fixture.log" >/dev/null &&
    grep -F "no file missing.html" "$tmp/fixture.log" >/dev/null || {
    cat "$tmp/fixture.log"
    echo "the link checker missed a broken link of the fixture" >&2
    exit 1
}
python3 ci/guide_links.py target/guide

echo "== the guide's Rust examples"
cargo test -p respool --doc guide
cargo test -p respool-observe --all-features --doc
echo "guide ok: built without warnings, links and anchors sound, examples pass"
