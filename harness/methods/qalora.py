"""QA-LoRA (Xu et al. 2023, "Quantization-Aware Low-Rank Adaptation"), which PEFT lacks.

The base weights of the adapted layers are quantized group-wise to `bits` bits along the input
dimension: W[i, k] ~ scale[i, j] * q[i, k] + offset[i, j] for k in group j (round-to-nearest min-max;
the paper initialises with GPTQ, which changes the codes, not the scheme). The LoRA branch sees the
input average-pooled per quantization group, so A is r x (d_in / group_size). Its update is then
constant within each group, and merging folds it exactly into the offsets (the zero-points):
    offset'[i, j] = offset[i, j] + scaling * (B A)[i, j] / group_size
so the merged model keeps the same low-bit codes: it stays quantized, with no LoRA branch left.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from harness.methods.base import MethodModel, freeze_all_but, replace_module


def _pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes -> bytes holding 8 // bits codes each (two 4-bit codes per byte)."""
    per_byte = 8 // bits
    flat = codes.flatten().to(torch.uint8)
    flat = F.pad(flat, (0, -flat.numel() % per_byte)).view(-1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.uint8) * bits
    return (flat << shifts).sum(-1, dtype=torch.uint8) if per_byte > 1 else flat.flatten()


def _unpack(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.uint8, device=packed.device) * bits
    mask = (1 << bits) - 1
    return ((packed.unsqueeze(-1) >> shifts) & mask).flatten()[:numel]


class QALoRALinear(torch.nn.Module):
    """A linear layer with group-wise quantized weights and a group-pooled LoRA branch."""

    def __init__(self, linear: torch.nn.Linear, bits: int, group_size: int, r: int, alpha: float,
                 dropout: float) -> None:
        super().__init__()
        d_out, d_in = linear.weight.shape
        if bits not in (2, 4, 8) or d_in % group_size:
            raise ValueError(f"QA-LoRA needs bits in (2, 4, 8) and in_features ({d_in}) divisible by "
                             f"group_size ({group_size}); set method.attach.group_size")
        self.bits, self.group_size, self.shape = bits, group_size, (d_out, d_in)
        self.in_features, self.out_features = d_in, d_out
        codes, scale, offset = self._quantize(linear.weight.detach().float(), bits, group_size)
        self.qweight = torch.nn.Parameter(_pack(codes, bits), requires_grad=False)
        self.qweight.logical_numel = d_out * d_in  # harness.cost counts weights, not bytes
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.lora_A = torch.nn.Linear(d_in // group_size, r, bias=False)
        self.lora_B = torch.nn.Linear(r, d_out, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_B.weight)
        self.dropout = torch.nn.Dropout(dropout)
        self.scaling = alpha / r
        self.merged = False

    @staticmethod
    def _quantize(weight: torch.Tensor, bits: int, group_size: int):
        d_out, d_in = weight.shape
        groups = weight.view(d_out, d_in // group_size, group_size)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = ((high - low) / (2 ** bits - 1)).clamp(min=torch.finfo(torch.float32).tiny)
        codes = torch.round((groups - low.unsqueeze(-1)) / scale.unsqueeze(-1)).clamp(0, 2 ** bits - 1)
        return codes.to(torch.uint8), scale, low

    def quantization_constants(self) -> Iterator[torch.Tensor]:
        yield from (self.scale, self.offset)

    def dequantized_weight(self) -> torch.Tensor:
        d_out, d_in = self.shape
        codes = _unpack(self.qweight, self.bits, d_out * d_in).view(d_out, -1, self.group_size)
        return (codes.to(self.scale.dtype) * self.scale.unsqueeze(-1) + self.offset.unsqueeze(-1)).view(d_out, d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.dequantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        if self.merged:
            return out
        pooled = self.dropout(x).unflatten(-1, (-1, self.group_size)).mean(-1)
        return out + self.lora_B(self.lora_A(pooled)) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the LoRA update into the quantization offsets; the codes stay as they are."""
        if self.merged:
            return
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling  # (d_out, groups)
        self.offset += delta / self.group_size
        self.lora_A = self.lora_B = None
        self.merged = True


class QALoRAModel(MethodModel):
    def merge_and_unload(self) -> torch.nn.Module:
        """The model with every LoRA branch folded into its quantized layers (still quantized)."""
        for module in self.model.modules():
            if isinstance(module, QALoRALinear):
                module.merge()
        return self.model


def attach(model: torch.nn.Module, target_modules: Sequence[str], bits: int = 4, group_size: int = 32,
           r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
           modules_to_save: Sequence[str] = ()) -> QALoRAModel:
    """Quantize the linear layers named in target_modules (last name part) and give each a QA-LoRA branch."""
    freeze_all_but(model, modules_to_save)
    targets = [(n, m) for n, m in model.named_modules()
               if n.split(".")[-1] in set(target_modules) and isinstance(m, torch.nn.Linear)]
    if not targets:
        raise ValueError(f"no nn.Linear named {list(target_modules)} in {type(model).__name__}; "
                         "set method.attach.target_modules")
    for name, linear in targets:
        replace_module(model, name, QALoRALinear(linear, bits, group_size, r, alpha, dropout).to(linear.weight.device))
    config = {"target_modules": list(target_modules), "bits": bits, "group_size": group_size, "r": r,
              "alpha": alpha, "dropout": dropout, "modules_to_save": list(modules_to_save)}
    return QALoRAModel(model, "qalora", config)
