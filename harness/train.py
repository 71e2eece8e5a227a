"""The training loop: plain PyTorch, the same for every method (the method is already in the model).

Batches come from a DataLoader over the cached features (worker processes and pinned memory on a
GPU, so collation stays off the critical path), in the order harness.batching draws: grouped by
length by default, seeded by seed + epoch. fp16 runs with a gradient scaler. Every
`checkpoint_every` steps the trainable weights, optimizer, scheduler, scaler, progress and every
random generator's state are saved (harness.checkpoint); a cell whose process was killed resumes from
there at the exact batch, with the same dropout draws, and ends with the numbers of an uninterrupted
run. A line every `log_every` steps says where training is.

The loop is the same on one process and on many: accelerate (harness.distributed) prepares the
model and optimizer (DDP, FSDP2 or DeepSpeed, per `distributed=`), runs the forward pass in the
cell's precision, and does backward, accumulation and clipping. Each process trains on its share
of every global batch.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig
from transformers import get_scheduler

from harness import checkpoint, distributed
from harness.batching import batch_tokens, epoch_batches, feature_lengths
from harness.checkpoint import discard as discard_checkpoint  # noqa: F401 -- harness.run's name for it
from harness.env import Device


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainStats:
    steps: int = 0
    examples: int = 0
    tokens: int = 0        # real (non-pad) tokens trained on
    positions: int = 0     # positions the batches occupied, padding included
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def padding_share(self) -> float:
        return 1 - self.tokens / self.positions if self.positions else 0.0


def model_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The loss a Hugging Face head computes from `labels` in the batch (tasks may supply another)."""
    return model(**batch).loss


def save_checkpoint(directory: Path, run: "_Run") -> None:
    checkpoint.save(directory, run.model, run.optimizer.optimizer, run.scheduler, run.scaler,
                    {"stats": asdict(run.stats), "window": list(run.window)})


def load_checkpoint(directory: Path | None, model, optimizer, scheduler, scaler) -> tuple[TrainStats, list[float]]:
    """The progress saved in `directory` (and the modules and generators restored), or a fresh start."""
    progress = checkpoint.load(directory, model, optimizer, scheduler, scaler)
    if progress is None:
        return TrainStats(), []
    stats = TrainStats(**progress["stats"])
    stats.resumed_from_step = stats.steps
    return stats, list(progress["window"])


def data_workers(cfg: DictConfig, device: Device) -> int:
    """`trainer.data_workers`: a number, or auto (up to 4 worker processes on a GPU, none on the CPU,
    where they would take cores from the model)."""
    setting = cfg.get("data_workers", "auto")
    if setting != "auto":
        return int(setting)
    return min(4, max(0, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0


def _loader(features, batches: list[list[int]], collate: Callable, cfg: DictConfig, device: Device, seed: int):
    """Its own seeded generator: a loader draws its workers' base seed from it, not from torch's
    global generator, whose draws (dropout) must continue across a resume as they would have."""
    workers = data_workers(cfg, device) if batches else 0
    return torch.utils.data.DataLoader(features, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                                       pin_memory=device.type == "cuda", persistent_workers=False,
                                       generator=torch.Generator().manual_seed(seed))


def train(model: torch.nn.Module, features, collate: Callable, cfg: DictConfig,
          make_optimizer: Callable, device: Device, seed: int,
          log: Callable[[dict, int], None] = lambda metrics, step: None,
          loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] = model_loss,
          step_hooks: tuple[Callable[[torch.nn.Module, int, int], None], ...] = (),
          checkpoint_dir: Path | None = None, accelerator=None) -> TrainStats:
    """Train for cfg.epochs (or cfg.max_steps optimizer steps); log the loss every cfg.log_every steps.

    step_hooks: called as hook(model, step, total_steps) after each optimizer step, before the
    gradients are cleared; a method's YAML names them (AdaLoRA's rank allocation, say).
    accelerator: harness.distributed.accelerator(...) of the cell (one process when None)."""
    acc = accelerator or distributed.accelerator(device, cfg.grad_accum)
    lengths, pairs = feature_lengths(features)
    per_epoch = max(1, math.ceil(math.ceil(len(lengths) / cfg.batch_size) / cfg.grad_accum))
    total = cfg.max_steps or per_epoch * cfg.epochs
    optimizer = make_optimizer(model)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total),
                              num_training_steps=total)
    wrapped, optimizer = acc.prepare(model, optimizer)
    if acc.unwrap_model(wrapped) is not model:
        raise RuntimeError("accelerate returned a new model object; the harness predicts with the one it built")
    distributed.gather_for_generate(model)
    scaler = acc.scaler or torch.amp.GradScaler(device.type, enabled=False)
    stats, window = load_checkpoint(checkpoint_dir, model, optimizer.optimizer, scheduler, scaler)
    run = _Run(acc, wrapped, model, optimizer, scheduler, scaler, cfg, stats, total, log, loss_fn, step_hooks,
               checkpoint_dir)
    run.window = window  # the losses of a logging window a checkpoint cut
    epoch, skip = divmod(stats.steps, per_epoch)
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    if use_cache is not None:  # no KV cache in training: packed blocks then keep attention per document
        config.use_cache = False
    wrapped.train()
    while stats.steps < total:
        batches = epoch_batches(lengths, cfg.batch_size, seed, epoch, cfg.get("group_by_length", True),
                                cfg.get("length_group_batches", 100))
        todo = [distributed.share(b) for b in batches[skip * cfg.grad_accum:]]  # this process's share of each
        loader = _loader(features, [idx for idx, _ in todo], collate, cfg, device, seed * 1_000_003 + epoch)
        for n, ((idx, weight), batch) in enumerate(zip(todo, loader)):
            step_now = (n + 1) % cfg.grad_accum == 0 or n + 1 == len(todo)
            counts = batch_tokens(idx, lengths, pairs) if weight else (0, 0)
            if run.micro_step(batch, weight, len(idx) if weight else 0, *counts, step_now) and stats.steps >= total:
                break
        epoch, skip = epoch + 1, 0
    stats.seconds = time.perf_counter() - run.start
    if use_cache is not None:
        config.use_cache = use_cache
    model.eval()
    return run.totals()


class _Run:
    """One training run's moving parts, so that a micro-batch is one readable method."""

    def __init__(self, acc, wrapped, model, optimizer, scheduler, scaler, cfg, stats, total, log, loss_fn,
                 step_hooks, checkpoint_dir):
        self.acc, self.wrapped, self.model = acc, wrapped, model  # wrapped: as prepared (DDP, FSDP, ...)
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.cfg, self.stats, self.total, self.log = cfg, stats, total, log
        self.loss_fn, self.step_hooks, self.checkpoint_dir = loss_fn, step_hooks, checkpoint_dir
        self.forward = distributed.Forward(wrapped, model)
        self.window: list[float] = []  # this process's weighted share of each micro-batch's loss
        self.start = time.perf_counter() - stats.seconds      # counts the seconds before a resume
        self.session = (time.perf_counter(), stats.steps, stats.tokens)  # this process's own progress

    def micro_step(self, batch: dict, weight: float, examples: int, real: int, positions: int,
                   step_now: bool) -> bool:
        """Forward and backward one micro-batch (weight: this process's share of the global batch),
        then an optimizer step when step_now (every grad_accum micro-batches, and at the epoch's end).
        Returns whether it stepped."""
        batch = {k: v.to(self.acc.device, non_blocking=True) for k, v in batch.items()}
        with distributed.no_sync(self.acc, self.wrapped, step_now):
            with self.acc.autocast():
                loss = self.loss_fn(self.forward, batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training diverged at step {self.stats.steps + 1}: the loss is "
                                       f"{loss.item()}; lower the learning rate (method.optimizer.lr) or check the data")
            self.acc.gradient_state._set_sync_gradients(step_now)  # as accelerate's accumulate() sets it (DeepSpeed steps on it)
            self.acc.backward(loss * weight)  # accelerate divides by the accumulation steps
        self.window.append(loss.item() * weight / self.acc.num_processes)
        self.stats.examples += examples
        self.stats.tokens += real
        self.stats.positions += positions
        if not step_now:
            return False
        self._optimizer_step()
        return True

    def _optimizer_step(self) -> None:
        stats, cfg = self.stats, self.cfg
        self.acc.clip_grad_norm_(self.wrapped.parameters(), cfg.max_grad_norm)  # unscales fp16 gradients first
        self.optimizer.step()
        self.scheduler.step()
        stats.steps += 1
        for hook in self.step_hooks:
            hook(self.model, stats.steps, self.total)
        self.optimizer.zero_grad(set_to_none=True)
        stats.seconds = time.perf_counter() - self.start
        if stats.steps % cfg.log_every == 0 or stats.steps == self.total:
            window = distributed.reduce_sum(self.window)  # each micro-batch's loss over the whole global batch
            stats.losses.append(sum(window) / len(window))
            lr = self.scheduler.get_last_lr()[0]
            self.log({"train_loss": stats.losses[-1], "lr": lr}, stats.steps)
            self._progress(stats.losses[-1], lr)
            self.window = []
        if self.checkpoint_dir and cfg.checkpoint_every and stats.steps % cfg.checkpoint_every == 0:
            save_checkpoint(self.checkpoint_dir, self)

    def totals(self) -> TrainStats:
        """The run's counts over every process (each counted its own shares)."""
        stats = self.stats
        if self.acc.num_processes > 1:
            stats.examples, stats.tokens, stats.positions = (
                int(v) for v in distributed.reduce_sum([stats.examples, stats.tokens, stats.positions]))
        return stats

    def _progress(self, loss: float, lr: float) -> None:
        """One line on the console (the main process's), whatever the tracker: where training is and
        how long is left."""
        if not self.acc.is_main_process:
            return
        stats, (t0, steps0, tokens0) = self.stats, self.session
        spent = max(time.perf_counter() - t0, 1e-9)
        rate = (stats.tokens - tokens0) / spent * self.acc.num_processes  # every process trains as many
        left = spent / max(stats.steps - steps0, 1) * (self.total - stats.steps)
        print(f"[harness] step {stats.steps}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {rate:,.0f} tokens/s  "
              f"{stats.seconds:.0f} s, ~{left:.0f} s left", flush=True)
