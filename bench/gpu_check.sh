#!/usr/bin/env bash
# The prepared GPU check: one GPU, nothing from the hub, under 8 minutes (bench/gpu_check.py); where
# more than one GPU is present, a 2-GPU DDP and FSDP step follows (about 5 minutes more).
#   bench/gpu_check.sh            # writes ${OUT:-runs/gpu_check}/gpu_check.json and prints each row
# The Python must have this project installed with a CUDA build of torch==2.13.0 (`make install` on
# the GPU host). Record the printed figures in bench/README.md with the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$PY" bench/gpu_check.py --out "${OUT:-runs/gpu_check}" "$@"

# More than one GPU: one cell on 2 GPUs with DDP and with FSDP2 against the same cell on one GPU
# (the same global batch: identical predictions, the loss curve within float tolerance).
GPUS=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l || echo 0)
if [ "${GPUS:-0}" -ge 2 ]; then
  OUTDIR="${OUT:-runs/gpu_check}/multi_gpu"
  CELL=(task=clone_bcb model=tiny_llama trainer=smoke method.peft.lora_dropout=0 trainer.batch_size=8
        trainer.max_steps=8 tracker=none precision=fp32)
  timeout 120 "$PY" -m harness "${CELL[@]}" hydra.run.dir="$OUTDIR/one_gpu"
  for backend in ddp fsdp; do
    timeout 150 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m harness "${CELL[@]}" \
      distributed=$backend hydra.run.dir="$OUTDIR/$backend"
    cmp "$OUTDIR/one_gpu/predictions/predictions.txt" "$OUTDIR/$backend/predictions/predictions.txt" \
      && echo "2 GPUs, $backend: predictions identical to one GPU"
    "$PY" -c "import json,sys; a,b=(json.load(open(f'$OUTDIR/{d}/result.json')) for d in ('one_gpu','$backend')); \
print('$backend', 'metrics', b['metrics'], 'one GPU', a['metrics'], 'tokens/s', b['cost']['tokens_per_second'], a['cost']['tokens_per_second'])"
  done
else
  echo "one GPU: the 2-GPU DDP/FSDP step is skipped"
fi
