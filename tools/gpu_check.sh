#!/usr/bin/env bash
# The GPU check, from the repository root on a machine with a GPU (no
# TensorFlow needed): builds tfkit_kernels with CUDA for the GPU present,
# then checks every family's CUDA launchers against its CPU kernels and
# times them against a copy and PyTorch (tools/gpu_check.py). The table and
# JSON go to $OUT (default build/gpu_check). Exit 0 when every case passes.
#   OUT=/some/dir tools/gpu_check.sh [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-build/gpu_check}
mkdir -p "$OUT"
cuda=on
arch=native
if [[ " $* " == *" --dry-run "* ]]; then cuda=auto; arch=sm_80,sm_90; fi
module=$("$PYTHON" tools/build_kernels_module.py --cuda "$cuda" --arch "$arch" --out build/kernels-gpu)
exec "$PYTHON" tools/gpu_check.py --module "$module" --out "$OUT" "$@"
