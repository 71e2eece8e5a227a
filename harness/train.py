"""The training loop: plain PyTorch, the same for every method (the method is already in the model)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from transformers import get_scheduler

from harness.env import Device


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainStats:
    steps: int = 0
    examples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def model_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The loss a Hugging Face head computes from `labels` in the batch (tasks may supply another)."""
    return model(**batch).loss


def train(model: torch.nn.Module, features: list[dict], collate: Callable, cfg: DictConfig,
          make_optimizer: Callable, device: Device, seed: int,
          log: Callable[[dict, int], None] = lambda metrics, step: None,
          loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] = model_loss,
          step_hooks: tuple[Callable[[torch.nn.Module, int, int], None], ...] = ()) -> TrainStats:
    """Train for cfg.epochs (or cfg.max_steps optimizer steps); log the loss every cfg.log_every steps.

    step_hooks: called as hook(model, step, total_steps) after each optimizer step, before the
    gradients are cleared; a method's YAML names them (AdaLoRA's rank allocation, say)."""
    loader = DataLoader(features, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total = cfg.max_steps or per_epoch * cfg.epochs
    optimizer = make_optimizer(model)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total),
                              num_training_steps=total)
    stats, start, window = TrainStats(), time.perf_counter(), []
    model.train()
    while stats.steps < total:
        for i, batch in enumerate(loader):
            batch = {k: v.to(device.type) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=device.dtype, enabled=device.autocast):
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at step {stats.steps}; "
                                       "lower the learning rate (method.optimizer.lr) or check the data")
            (loss / cfg.grad_accum).backward()
            window.append(loss.item())
            stats.examples += len(batch["input_ids"])
            stats.tokens += int(batch["attention_mask"].sum())
            if (i + 1) % cfg.grad_accum and i + 1 < len(loader):
                continue
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            stats.steps += 1
            for hook in step_hooks:
                hook(model, stats.steps, total)
            optimizer.zero_grad(set_to_none=True)
            if stats.steps % cfg.log_every == 0 or stats.steps == total:
                stats.losses.append(sum(window) / len(window))
                log({"train_loss": stats.losses[-1], "lr": scheduler.get_last_lr()[0]}, stats.steps)
                window = []
            if stats.steps >= total:
                break
    stats.seconds = time.perf_counter() - start
    model.eval()
    return stats
