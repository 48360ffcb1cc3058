#!/usr/bin/env bash
# Why: installs what the checks need (Debian packages, pinned cargo tools) idempotently, so a fresh machine runs ci/all.sh unattended.
set -euo pipefail

# parallel: GNU parallel, which respool run's tests compare with;
# prometheus: promtool checks the metrics exposition; chromium, chromium-driver
# drive the dashboard (ci/dashboard_browser.py speaks WebDriver itself);
# graphviz renders the architecture diagrams (ci/diagrams.sh); redis-server
# (Debian 12: 7.0.15, with redis-cli) is what ci/redis.sh tests RedisStore against;
# libssl-dev builds respool's redis-tls feature (native-tls on OpenSSL).
apt_packages=(libhwloc-dev libudev-dev pkg-config valgrind cmake gcc g++ llvm-22 stress-ng
    prometheus chromium chromium-driver graphviz parallel redis-server libssl-dev)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "== apt-get install ${missing[*]}"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! rustup toolchain list | grep '^nightly' >/dev/null; then
    echo "== rustup toolchain install nightly"
    rustup toolchain install nightly --profile minimal --component clippy
fi
# An existing nightly may lack clippy (ci/clippy.sh lints the fuzz targets with it).
if ! cargo +nightly clippy --version >/dev/null 2>&1; then
    echo "== rustup component add clippy --toolchain nightly"
    rustup component add clippy --toolchain nightly
fi

# name, version, command whose --version output must contain the version
install_pinned() {
    local name=$1 version=$2
    shift 2
    if "$@" --version 2>/dev/null | grep -F "$version" >/dev/null; then
        return
    fi
    echo "== cargo install $name $version"
    cargo install "$name" --version "$version" --locked
}

# gungraun's runner must match the gungraun library version in benches/Cargo.toml.
install_pinned gungraun-runner 0.20.0 gungraun-runner
install_pinned cbindgen 0.29.4 cbindgen
install_pinned cargo-fuzz 0.13.2 cargo fuzz
install_pinned cargo-llvm-cov 0.9.1 cargo llvm-cov
# Lists each crate's public API from nightly rustdoc JSON (ci/public-api.sh).
install_pinned cargo-public-api 0.52.0 cargo public-api
# Builds the user guide (ci/guide.sh): 1 min 45 s cold on 2 cores. Its links are
# checked by ci/guide_links.py (no tool to install; see there why).
install_pinned mdbook 0.5.4 mdbook
