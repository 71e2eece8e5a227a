#!/usr/bin/env bash
# The prepared GPU check: one GPU, nothing from the hub, under 8 minutes (bench/gpu_check.py).
#   bench/gpu_check.sh            # writes ${OUT:-runs/gpu_check}/gpu_check.json and prints each row
# The Python must have this project installed with a CUDA build of torch==2.13.0 (`make install` on
# the GPU host). Record the printed figures in bench/README.md with the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$PY" bench/gpu_check.py --out "${OUT:-runs/gpu_check}" "$@"
