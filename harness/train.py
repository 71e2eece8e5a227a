"""The training loop: plain PyTorch, the same for every method (the method is already in the model).

It checkpoints the trainable weights, optimizer, scheduler and progress every `checkpoint_every`
steps; a cell whose process was killed resumes from there, on the same data order (each epoch's
shuffle is seeded by seed + epoch, so the batches already seen are skipped exactly).
"""
from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig
from transformers import get_scheduler

from harness.env import Device

CHECKPOINT = "checkpoint.pt"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainStats:
    steps: int = 0
    examples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def model_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The loss a Hugging Face head computes from `labels` in the batch (tasks may supply another)."""
    return model(**batch).loss


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, model, optimizer, scheduler, stats: TrainStats) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{CHECKPOINT}.tmp{os.getpid()}"
    torch.save({"model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "stats": asdict(stats)}, tmp)
    os.replace(tmp, directory / CHECKPOINT)  # atomic: a kill mid-write leaves the previous one


def load_checkpoint(directory: Path | None, model, optimizer, scheduler) -> TrainStats | None:
    path = directory / CHECKPOINT if directory else None
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    missing = set(state["model"]) - {n for n, _ in model.named_parameters()}
    if missing:
        raise RuntimeError(f"checkpoint {path} does not fit this model (e.g. {sorted(missing)[0]}); "
                           "delete it or set rerun=true")
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stats = TrainStats(**state["stats"])
    stats.resumed_from_step = stats.steps
    return stats


def train(model: torch.nn.Module, features: list[dict], collate: Callable, cfg: DictConfig,
          make_optimizer: Callable, device: Device, seed: int,
          log: Callable[[dict, int], None] = lambda metrics, step: None,
          loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] = model_loss,
          step_hooks: tuple[Callable[[torch.nn.Module, int, int], None], ...] = (),
          checkpoint_dir: Path | None = None) -> TrainStats:
    """Train for cfg.epochs (or cfg.max_steps optimizer steps); log the loss every cfg.log_every steps.

    step_hooks: called as hook(model, step, total_steps) after each optimizer step, before the
    gradients are cleared; a method's YAML names them (AdaLoRA's rank allocation, say)."""
    batches_per_epoch = math.ceil(len(features) / cfg.batch_size)
    per_epoch = max(1, math.ceil(batches_per_epoch / cfg.grad_accum))
    total = cfg.max_steps or per_epoch * cfg.epochs
    optimizer = make_optimizer(model)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total),
                              num_training_steps=total)
    stats = load_checkpoint(checkpoint_dir, model, optimizer, scheduler) or TrainStats()
    start, window = time.perf_counter() - stats.seconds, []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    epoch, skip = divmod(stats.steps, per_epoch)
    model.train()
    while stats.steps < total:
        order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for i in range(skip * cfg.grad_accum, len(batches)):
            batch = {k: v.to(device.type) for k, v in collate([features[j] for j in batches[i]]).items()}
            with torch.autocast(device.type, dtype=device.dtype, enabled=device.autocast):
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at step {stats.steps}; "
                                       "lower the learning rate (method.optimizer.lr) or check the data")
            (loss / cfg.grad_accum).backward()
            window.append(loss.item())
            stats.examples += len(batches[i])
            stats.tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
            if (i + 1) % cfg.grad_accum and i + 1 < len(batches):
                continue
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
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
            stats.seconds = time.perf_counter() - start
            if checkpoint_dir and cfg.checkpoint_every and stats.steps % cfg.checkpoint_every == 0:
                save_checkpoint(checkpoint_dir, model, optimizer, scheduler, stats)
            if stats.steps >= total:
                break
        epoch, skip = epoch + 1, 0
    stats.seconds = time.perf_counter() - start
    model.eval()
    return stats


def discard_checkpoint(checkpoint_dir: Path | None) -> None:
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
