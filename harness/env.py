"""The machine a cell runs on: device and precision, chosen once, from what is present."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Device:
    type: str            # "cuda" or "cpu"
    dtype: torch.dtype   # compute dtype for autocast / quantized matmuls

    @property
    def name(self) -> str:
        return torch.cuda.get_device_name(0) if self.type == "cuda" else "cpu"

    @property
    def autocast(self) -> bool:
        return self.dtype != torch.float32


def pick_device(requested: str = "auto", precision: str = "auto") -> Device:
    """CUDA when present (bf16 where the GPU supports it, else fp16 with loss scaling), else the CPU in
    fp32 (bf16 is slower there)."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA device is visible; use device=auto or cpu")
    if precision == "auto":
        cuda = requested == "cuda"
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"precision={precision!r}; expected one of auto, {', '.join(dtypes)}")
    return Device(requested, dtypes[precision])


def cache_dir(kind: str) -> Path:
    """Where built artefacts (tokenizers, random-init models) are cached: $HARNESS_CACHE_DIR or runs/cache."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", "runs/cache")) / kind
