"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021), which PEFT lacks.

An adapter is a small residual MLP, h + up(act(down(h))), inserted on the output of a sub-layer
before the block's own residual connection and layer norm. The up-projection starts at zero, so the
model is unchanged before training. Placements:
  houlsby   two adapters per layer: after the attention output and after the feed-forward output
  pfeiffer  one adapter per layer, after the feed-forward output
Where they go is model data: the model YAML's `adapter_modules` maps `attention` and `ffn` to a regex
over module names matching each sub-layer's output projection (encoder, decoder and seq2seq blocks
alike; T5's cross-attention counts as attention).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from harness.methods.base import MethodModel, freeze_all_but, matching_modules, replace_module

PLACEMENTS: dict[str, tuple[str, ...]] = {"houlsby": ("attention", "ffn"), "pfeiffer": ("ffn",)}
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "tanh": torch.nn.Tanh}


class Bottleneck(torch.nn.Module):
    def __init__(self, dim: int, bottleneck: int, activation: str) -> None:
        super().__init__()
        self.down = torch.nn.Linear(dim, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = torch.nn.Linear(bottleneck, dim)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class WithAdapter(torch.nn.Module):
    """A sub-layer's output projection followed by its adapter."""

    def __init__(self, base: torch.nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.adapter(self.base(*args, **kwargs))

    def __getattr__(self, name: str):
        """Model code that inspects the projection (T5 reads `wo.weight.dtype`) still finds it."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base":
                raise
            return getattr(self.base, name)


def attach(model: torch.nn.Module, modules: Mapping[str, str], placement: str = "houlsby",
           reduction_factor: int = 16, activation: str = "relu",
           modules_to_save: Sequence[str] = ()) -> MethodModel:
    """Freeze the model, insert adapters at `placement`, keep `modules_to_save` (new heads) trainable."""
    if placement not in PLACEMENTS:
        raise ValueError(f"adapter placement {placement!r}; expected one of {sorted(PLACEMENTS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"adapter activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    freeze_all_but(model, modules_to_save)
    for sublayer in PLACEMENTS[placement]:
        if sublayer not in modules:
            raise ValueError(f"placement {placement} needs adapter_modules.{sublayer} in the model YAML")
        for name, module in matching_modules(model, modules[sublayer]):
            dim = getattr(module, "out_features", None) or module.nf  # nn.Linear, or GPT-2's Conv1D
            replace_module(model, name, WithAdapter(module, Bottleneck(dim, max(1, dim // reduction_factor),
                                                                       activation)))
    config = {"placement": placement, "reduction_factor": reduction_factor, "activation": activation,
              "modules": dict(modules), "modules_to_save": list(modules_to_save)}
    return MethodModel(model, "adapter", config)
