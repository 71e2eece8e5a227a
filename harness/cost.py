"""What a run costs: parameters, memory, time, throughput, size on disk."""
from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch


def parameter_counts(model: torch.nn.Module) -> dict[str, float]:
    """Trainable and total parameters. A 4-bit weight is stored as packed uint8 (two values per
    element), so its logical count is read from the bitsandbytes quant state where present."""
    total = trainable = 0
    for p in model.parameters():
        n = p.quant_state.shape.numel() if getattr(p, "quant_state", None) is not None else p.numel()
        total += n
        trainable += n if p.requires_grad else 0
    return {"trainable_params": trainable, "total_params": total,
            "trainable_share": trainable / total if total else 0.0}


def base_weight_bytes(model: torch.nn.Module) -> int:
    """Memory of the frozen (possibly quantized) weights, quantization constants included."""
    size = 0
    for p in model.parameters():
        if not p.requires_grad:
            size += p.numel() * p.element_size()
            state = getattr(p, "quant_state", None)
            if state is not None:
                size += sum(t.numel() * t.element_size() for t in _state_tensors(state))
    return size


def _state_tensors(state) -> list[torch.Tensor]:
    tensors = [state.absmax]
    if getattr(state, "state2", None) is not None:
        tensors += [state.state2.absmax, state.state2.code]
    return [t for t in tensors if isinstance(t, torch.Tensor)]


def reset_peak_memory(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes(device_type: str) -> int:
    """CUDA max allocated on a GPU; process peak RSS on the CPU."""
    if device_type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
