#!/usr/bin/env bash
# Why: respool-operator (operator/, its own cargo workspace: kube and tokio stay out of the main build) formatted, lint-free, documented and tested (its reconcile loop against a mocked API server), its committed CRD equal to the generated one, and the CRD, its manifests and the example RespoolProfile validated offline (ci/validate_operator.py).
#
# No cluster runs here. kubernetes-validate (pinned, as ci/exports.sh pins
# it) and jsonschema go into the same virtual environment under target/
# (never system-wide); without Python 3.11+ or the package index, the
# offline validation is skipped (a note says so) and the cargo checks
# still run. Cargo builds under nice with 2 jobs into operator/target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

KUBERNETES_VALIDATE_VERSION=1.37.0
JSONSCHEMA_VERSION=4.26.0
jobs="-j${CARGO_BUILD_JOBS:-2}"

note() {
    if [ -n "${CI_STEP_NOTES:-}" ]; then echo "$1" >>"$CI_STEP_NOTES"; else echo "partly skipped: $1"; fi
}

(
    cd operator
    cargo fmt -- --check
    nice -n 10 cargo clippy "$jobs" --locked --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" nice -n 10 cargo doc "$jobs" --locked --no-deps
    nice -n 10 cargo test "$jobs" --locked
)
# Built by the tests above (tests/cli.rs runs it).
operator=operator/target/debug/respool-operator

# The test the_committed_crd_is_the_generated_one checks this too; this
# says it with a diff.
if ! "$operator" crd | diff -u deploy/kubernetes/respoolprofile-crd.yaml -; then
    echo "deploy/kubernetes/respoolprofile-crd.yaml differs from \`respool-operator crd\`; regenerate it:" >&2
    echo "  cargo run --manifest-path operator/Cargo.toml -- crd > deploy/kubernetes/respoolprofile-crd.yaml" >&2
    exit 1
fi

if ! python3 -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    note "operator manifests not validated: needs Python 3.11 or later with venv"
    exit 0
fi
venv=target/exports-venv
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$KUBERNETES_VALIDATE_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv" || { note "operator manifests not validated: python3 -m venv failed"; exit 0; }
    "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" || {
        note "operator manifests not validated: pip could not install kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
        exit 0
    }
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('jsonschema') == '$JSONSCHEMA_VERSION'" 2>/dev/null; then
    "$venv/bin/pip" install -q "jsonschema==$JSONSCHEMA_VERSION" || {
        note "operator manifests not validated: pip could not install jsonschema $JSONSCHEMA_VERSION"
        exit 0
    }
fi
"$venv/bin/python" ci/validate_operator.py "$operator" "$venv/bin/kubernetes-validate"
