#!/usr/bin/env bash
# Why: every change of the public API is deliberate: the listing of each crate's public items (cargo public-api, from nightly rustdoc JSON) must equal the committed <crate>/public-api.txt; `ci/public-api.sh --update` rewrites the listings after a deliberate change.
set -euo pipefail
cd "$(dirname "$0")/.."

# crate name, directory (where its public-api.txt lives)
crates=(
    "respool-core core"
    "respool-sys sys"
    "respool std-runtime --features redis-tls"
    "respool-ffi ffi"
    "respool-observe observe --all-features"
)
update=0
[ "${1:-}" = "--update" ] && update=1

out=target/public-api
mkdir -p "$out"
failed=()
for entry in "${crates[@]}"; do
    read -r name dir flags <<<"$entry"
    # -sss: without blanket, auto-trait and auto-derived impls (what a
    # reader of the surface cares about); default features, unless the
    # entry names flags (respool-observe: every feature, so that the
    # dashboard and OpenTelemetry surfaces are listed too; respool: its
    # `redis-tls` feature, so that RedisStore and its TLS option are listed).
    # shellcheck disable=SC2086 # $flags: optional extra flags, split on purpose
    cargo public-api --package "$name" $flags -sss --color never >"$out/$name.txt"
    if [ "$update" = 1 ]; then
        cp "$out/$name.txt" "$dir/public-api.txt"
        echo "$dir/public-api.txt: $(wc -l <"$dir/public-api.txt") lines"
    elif ! diff -u "$dir/public-api.txt" "$out/$name.txt" >"$out/$name.diff"; then
        echo "== $name: the public API differs from $dir/public-api.txt (- committed, + now):"
        cat "$out/$name.diff"
        failed+=("$name")
    else
        echo "$name: $(grep -c . "$dir/public-api.txt") lines, unchanged"
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "public API changed in: ${failed[*]}. If the change is deliberate, run ci/public-api.sh --update and commit the listings." >&2
    exit 1
fi
