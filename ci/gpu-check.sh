#!/usr/bin/env bash
# Prints what respool sees of this machine's NVIDIA GPUs, next to what
# nvidia-smi says. Meant to be run by hand (or by a CI job) on a GPU machine:
#
#   ci/gpu-check.sh
#
# It builds respool-sys with the `nvml` feature (NVML is loaded at run time, so
# no CUDA toolkit is needed, only the driver) and runs the GPU tests with
# their output: device count, names, memory, live utilisation and memory in
# use, and the placement domains. On a machine without a driver it shows the
# reason respool gives instead, and still passes.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L || true
    nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,memory.total,memory.used,utilization.gpu \
        --format=csv || true
    nvidia-smi topo -m || true
else
    echo "nvidia-smi not found"
fi

echo
echo "== respool-sys (--features nvml)"
features=nvml
if pkg-config --exists hwloc 2>/dev/null; then
    features=nvml,hwloc # NUMA domains too, when libhwloc-dev is installed
fi
cargo test -p respool-sys --features "$features" --test gpu -- --nocapture --test-threads 1
