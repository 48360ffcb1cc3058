#!/usr/bin/env bash
# Why: what `respool profiles export --format k8s|slurm|hq|ray` writes, and the manifests under deploy/, checked offline: each format parsed by a real parser, Kubernetes objects validated against the Kubernetes schemas (kubernetes-validate), and the numbers read back equal to those computed by hand from deploy/profiles-example.json.
#
# No cluster can run here: kubernetes-validate (pinned) is installed into a
# virtual environment under target/ (never system-wide). Exits 77 with the
# reason when Python 3.11+ (tomllib) or the package index is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

KUBERNETES_VALIDATE_VERSION=1.37.0

skip() {
    if [ -n "${CI_STEP_NOTES:-}" ]; then echo "$1" >>"$CI_STEP_NOTES"; else echo "skipped: $1"; fi
    exit 77
}

python3 -c 'import sys, tomllib, venv; assert sys.version_info >= (3, 11)' 2>/dev/null ||
    skip "needs Python 3.11 or later with venv (tomllib parses the HyperQueue job file)"
venv=target/exports-venv
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$KUBERNETES_VALIDATE_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv" || skip "python3 -m venv failed"
    "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
        skip "pip could not install kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
fi

cargo build -j"${CARGO_BUILD_JOBS:-2}" -p respool-cli
"$venv/bin/python" ci/validate_exports.py target/debug/respool "$venv/bin/kubernetes-validate"
