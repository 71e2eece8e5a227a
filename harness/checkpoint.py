"""Training checkpoints: what a killed cell needs to go on exactly where it stopped.

A checkpoint holds the trainable weights, the optimizer, scheduler and gradient-scaler states, the
progress (harness.train.TrainStats and the losses of the logging window still open) and every random
number generator training draws from: Python's `random`, NumPy's global generator, torch's CPU
generator and, where CUDA is in use, each GPU's. So dropout draws the same masks after a resume as
it would have without the kill. The data position needs no state of its own: an epoch's batch order
is a function of (seed, epoch) (harness.batching) and the DataLoader draws from its own seeded
generator, so the resumed loop skips the batches already trained on and meets the same ones next.

It is written to a temporary file and renamed (harness.files.atomic): a kill or a full disk
mid-write leaves the previous checkpoint whole.

Under several processes (harness.distributed) every process takes part in a save: sharded weights
and optimizer state (FSDP) are gathered whole through torch.distributed.checkpoint's state-dict
API, each process's progress and generators are gathered, and the main process writes the one
file. On resume every process reads it (the checkpoint dir may sit on a shared filesystem) and
takes its own progress and generators back; resumed on another number of processes, each takes the
main process's, with a warning that the resume is not exact.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from harness import distributed
from harness.files import atomic

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    """Every generator's state, by the libraries' own APIs."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            print(f"[harness] warning: the checkpoint holds {len(state['cuda'])} GPUs' generator states and "
                  f"{torch.cuda.device_count()} GPUs are visible: the resume is not exact", flush=True)
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights, whole (a sharded DTensor is gathered: every process must call this)."""
    from torch.distributed.tensor import DTensor

    return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu().clone()
            for n, p in model.named_parameters() if p.requires_grad}


def _optimizer_state(model, optimizer) -> dict:
    if not distributed.params_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _restore(model, optimizer, state: dict) -> None:
    if not distributed.params_sharded(model):
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    whole = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, state["model"], options=whole)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=whole)


def save(directory: Path, model, optimizer, scheduler, scaler, progress: dict) -> None:
    """progress: what the loop needs besides the modules' states (its stats, the open log window)."""
    weights, optim = _trainable_state(model), _optimizer_state(model, optimizer)
    ranks = distributed.gather_objects({"progress": progress, "rng": rng_state()})
    if not distributed.is_main():
        return
    directory.mkdir(parents=True, exist_ok=True)
    state = {"model": weights, "optimizer": optim, "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "progress": progress, "rng": ranks[0]["rng"], "ranks": ranks}
    with atomic(directory / CHECKPOINT) as tmp, open(tmp, "wb") as file:
        torch.save(state, file)  # through a Python file: a full disk raises OSError(ENOSPC), not a torch error


def load(directory: Path | None, model, optimizer, scheduler, scaler) -> dict | None:
    """Restore the modules and the generators; return the saved progress (None: no checkpoint)."""
    path = directory / CHECKPOINT if directory else None
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    missing = set(state["model"]) - {n for n, _ in model.named_parameters()}
    if missing or "progress" not in state:
        why = f"e.g. {sorted(missing)[0]}" if missing else "an older checkpoint format"
        raise RuntimeError(f"checkpoint {path} does not fit this model ({why}); delete it or set rerun=true")
    _restore(model, optimizer, state)
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state.get("scaler") or {})
    ranks = state.get("ranks") or [{"progress": state["progress"], "rng": state["rng"]}]
    if len(ranks) != distributed.world():
        print(f"[harness] warning: the checkpoint was written by {len(ranks)} processes and {distributed.world()} "
              "run now: each takes the main process's progress and generators, so the resume is not exact",
              flush=True)
    mine = ranks[distributed.rank()] if len(ranks) == distributed.world() else ranks[0]
    set_rng_state(mine["rng"])
    return mine["progress"]


def discard(checkpoint_dir: Path | None) -> None:
    if checkpoint_dir and distributed.is_main():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
