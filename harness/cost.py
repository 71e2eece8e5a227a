"""What a run costs: parameters, weight memory, peak memory, time, throughput, size on disk.

Quantized weights are counted by their logical size: a bitsandbytes 4-bit weight is stored as packed
uint8 (two values per byte) with its shape in the quant state; QA-LoRA's packed codes carry
`logical_numel`. Weight memory is what the tensors really occupy, quantization constants included.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import psutil
import torch


def logical_numel(p: torch.Tensor) -> int:
    """How many weights a parameter holds, whatever its storage (packed 4-bit, int8, float)."""
    state = getattr(p, "quant_state", None)
    if state is not None:
        return state.shape.numel()
    return int(getattr(p, "logical_numel", p.numel()))


def parameter_counts(model: torch.nn.Module) -> dict[str, float]:
    """Trainable and total parameters (logical counts), the trainable share, and the bytes all
    weights occupy (`weight_bytes`) and the trainable ones (`trainable_bytes`)."""
    total = trainable = trainable_bytes = 0
    for p in model.parameters():
        n = logical_numel(p)
        total += n
        if p.requires_grad:
            trainable += n
            trainable_bytes += p.numel() * p.element_size()
    return {"trainable_params": trainable, "total_params": total,
            "trainable_share": trainable / total if total else 0.0,
            "weight_bytes": trainable_bytes + base_weight_bytes(model), "trainable_bytes": trainable_bytes}


def base_weight_bytes(model: torch.nn.Module) -> int:
    """Memory of the frozen (possibly quantized) base weights, quantization constants included.
    Zero under full fine-tuning, where every weight trains (see weight_bytes)."""
    size = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    return size + sum(t.numel() * t.element_size() for t in _quantization_constants(model))


def _quantization_constants(model: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Scales, zero-points and codebooks of quantized weights (each shared tensor once)."""
    seen: set[int] = set()
    for module in model.modules():
        found: list = list(module.quantization_constants()) if hasattr(module, "quantization_constants") else []
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                continue
            found += _bnb_4bit(getattr(p, "quant_state", None))
            found += [getattr(p, "SCB", None)]  # LLM.int8 row scales
            cb = getattr(p, "CB", None)          # int8 weights, when not the parameter's own storage
            if isinstance(cb, torch.Tensor) and cb.data_ptr() != p.data_ptr():
                found.append(cb)
        for t in found:
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                yield t


def _bnb_4bit(state) -> list:
    if state is None:
        return []
    tensors = [state.absmax, state.code, getattr(state, "offset", None)]
    if getattr(state, "state2", None) is not None:
        tensors += [state.state2.absmax, state.state2.code]
    return tensors


class PeakMemory:
    """This cell's peak memory. On a GPU: CUDA's max allocated since the cell started (the counter is
    reset then). On the CPU, which has no counter to reset: the resident set size sampled every
    `interval` seconds by a thread, minus the RSS when the cell started, so the cells of one sweep
    (one process) are comparable. Use as a context manager; `.bytes` is the peak."""

    def __init__(self, device_type: str, interval: float = 0.02):
        self.device_type, self.interval = device_type, interval
        self.bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device_type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return self
        self._process = psutil.Process()
        self._start = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, self._process.memory_info().rss - self._start)
            self._stop.wait(self.interval)

    def read(self) -> int:
        """The peak so far."""
        if self.device_type == "cuda":
            return int(torch.cuda.max_memory_allocated())
        return int(max(self.bytes, self._process.memory_info().rss - self._start))

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self.bytes = self.read()
            self._stop.set()
            self._thread.join()


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
