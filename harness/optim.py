"""Optimizer builders, named by a method's `optimizer._target_` and called with the model.

Method-specific training settings (LoRA+ learning-rate ratio, ...) live here and in the method's
YAML, never as branches in the training loop.
"""
from __future__ import annotations

import torch


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def adamw(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    return torch.optim.AdamW(trainable(model), lr=lr, weight_decay=weight_decay, betas=tuple(betas))


def loraplus(model: torch.nn.Module, lr: float, lr_ratio: float = 16.0, weight_decay: float = 0.0,
             betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """LoRA+ (Hayou et al. 2024): AdamW where every LoRA B matrix learns at lr * lr_ratio and the rest
    (A matrices, heads) at lr."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fast = [p for n, p in named if ".lora_B." in n]
    if not fast:
        raise ValueError("loraplus found no LoRA B matrices (parameters named '.lora_B.'); "
                         "use it with a LoRA-family method")
    slow = [p for n, p in named if ".lora_B." not in n]
    groups = [{"params": slow, "lr": lr}, {"params": fast, "lr": lr * lr_ratio}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
