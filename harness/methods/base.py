"""What the methods PEFT lacks share: a thin wrapper that saves and reloads only what trained.

The wrapper forwards calls and attributes to the wrapped transformers model (as PEFT's PeftModel
does), so the harness predicts, generates and saves without knowing which method it holds."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save_file

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


class MethodModel(torch.nn.Module):
    """model + the method's own modules (already inserted into it) + the config that inserted them."""

    def __init__(self, model: torch.nn.Module, method: str, config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.method_name = method
        self.method_config = config

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What training changed: the trainable parameters (method modules and new heads)."""
        return {n: p.detach().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_pretrained(self, path: str | Path, **_: Any) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps({"method": self.method_name, **self.method_config},
                                                   indent=2, default=str))
        save_file(self.trained_state(), str(path / WEIGHTS_NAME))

    def load_trained_weights(self, path: str | Path) -> None:
        """Load what save_pretrained wrote into a model the same method was attached to."""
        path = Path(path)
        saved = json.loads((path / CONFIG_NAME).read_text())
        if saved.get("method") != self.method_name:
            raise ValueError(f"{path} holds a {saved.get('method')} adapter; this model has {self.method_name}")
        weights = load_file(str(path / WEIGHTS_NAME))
        missing = set(self.trained_state()) - set(weights)
        result = self.model.load_state_dict(weights, strict=False)
        if result.unexpected_keys or missing:
            raise ValueError(f"{path}: adapter weights do not match the model "
                             f"(unexpected {result.unexpected_keys[:5]}, missing {sorted(missing)[:5]})")


def freeze_all_but(model: torch.nn.Module, trainable_modules: Iterable[str]) -> None:
    """Freeze every parameter, then unfreeze the modules whose last name part is listed (new heads)."""
    names = set(trainable_modules)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in model.named_modules():
        if name.split(".")[-1] in names:
            module.requires_grad_(True)


def matching_modules(model: torch.nn.Module, pattern: str) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) for every module whose full name matches the regex (re.search)."""
    found = [(n, m) for n, m in model.named_modules() if n and re.search(pattern, n)]
    if not found:
        raise ValueError(f"no module of {type(model).__name__} matches {pattern!r}; "
                         "fix the pattern in the model YAML")
    return found


def replace_module(model: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
