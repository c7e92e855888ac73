#!/usr/bin/env bash
# Installs the pinned NVRTC (CUDA 12.9) into the checkout's .nvrtc/ folder,
# where netc looks for it first after $NETC_NVRTC. No GPU or CUDA toolkit needed.
#
# 12.9 is pinned on purpose: it emits PTX ISA 8.8, which CUDA 12.9-era drivers
# and ptxas accept; a newer NVRTC emits an ISA they reject.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

target=".nvrtc"
lib="$target/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
include="$target/nvidia/cuda_runtime/include/cuda_fp16.h"

if [[ -f "$lib" && -f "$include" ]]; then
    echo "setup: NVRTC already installed at $repo_root/$lib"
    exit 0
fi

# `pip install --target` into an existing folder skips files that are already
# there, so a half-finished install would never be repaired: start clean, and
# install both wheels in one command.
rm -rf "$target"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$target" \
    nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79

if [[ ! -f "$lib" ]]; then
    echo "setup: pip finished but $lib is missing" >&2
    exit 1
fi
echo "setup: installed NVRTC 12.9 at $repo_root/$lib"
