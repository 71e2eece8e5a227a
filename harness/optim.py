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
