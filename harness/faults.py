"""How a cell ends when a resource runs out, and how its record is written so that it stays true.

A cell that fails is FAILED with a reason that says what happened and what to change:
- a NaN or infinite loss: `training diverged at step N` (harness.train.TrainingDiverged);
- out of memory, on a GPU (torch.OutOfMemoryError) or the CPU (MemoryError, or torch's CPU
  allocator failing): the memory harness.estimate expects for the cell, the device's own, and the
  setting to lower for the phase that ran out (training, predicting or loading);
- a full disk (OSError ENOSPC or EDQUOT) while writing a checkpoint, an artefact or result.json:
  the file and the free space. Checkpoints and result.json are written through harness.files.atomic,
  so a full disk leaves the previous version or none, never half a file; and `close` never ends the
  MLflow run FINISHED unless result.json was written and logged.
"""
from __future__ import annotations

import errno
import gc
import os
import shutil
import sys
import traceback
from pathlib import Path

from harness.redact import redact
from harness.report import _fmt_bytes as size
from harness.results import FAILED

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))  # torch's CPU allocator


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL


def reason(err: BaseException, cfg, result) -> str:
    """The FAILED reason result.json and MLflow (tag harness.reason) record for `err`."""
    if cfg is not None and is_out_of_memory(err):
        return out_of_memory(err, cfg, result)
    if is_disk_full(err):
        return disk_full(err)
    return f"{type(err).__name__}: {err}"


def _phase(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if any(Path(f.filename).name == "train.py" and f.name == "train" for f in frames):
        return "training"
    return "predicting" if any(f.name in ("predict", "evaluate") for f in frames) else "loading"


def _capacity(err: BaseException) -> str:
    import torch

    if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():  # the GPU's allocator ran out
        return f"the GPU has {size(torch.cuda.get_device_properties(0).total_memory)}"
    try:
        return f"the machine has {size(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))}"
    except (ValueError, OSError):
        return "the machine's memory is unknown"


def _estimated_peak(cfg, result) -> int | None:
    if result.cost.get("estimated_peak_memory_bytes"):
        return int(result.cost["estimated_peak_memory_bytes"])
    from harness.estimate import estimate

    try:
        return estimate(cfg).peak_bytes
    except Exception:  # noqa: BLE001 -- the reason is written without it
        return None


def out_of_memory(err: BaseException, cfg, result) -> str:
    device = result.device or str(cfg.device)
    peak = _estimated_peak(cfg, result)
    expected = (f"harness.estimate puts this cell's training peak at {size(peak)}" if peak
                else "harness.estimate could not size this cell")
    phase, trainer = _phase(err), cfg.trainer
    if phase == "training":
        lower = (f"lower trainer.batch_size (now {trainer.batch_size}; raise trainer.grad_accum, now "
                 f"{trainer.grad_accum}, to keep the effective batch)"
                 + ("" if trainer.get("gradient_checkpointing") else ", set trainer.gradient_checkpointing=true")
                 + f" or lower model.max_length (now {cfg.model.max_length})")
    elif phase == "predicting":
        lower = f"lower trainer.eval_batch_size (now {trainer.eval_batch_size})"
    else:
        lower = "pick a quantized method (method=qlora) or a smaller model"
    first_line = (str(err).strip().splitlines() or [""])[0][:300]
    detail = f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
    return (f"out of memory on {device} while {phase} ({detail}); {expected}, "
            f"{_capacity(err)}; {lower}. `python -m harness.estimate <the same overrides>` sizes a setting "
            "before a run")


def disk_full(err: OSError) -> str:
    where = err.filename or "a file the error does not name"
    existing = Path(err.filename).parent if err.filename else Path.cwd()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    return (f"disk full ({errno.errorcode.get(err.errno, err.errno)}) while writing {where} "
            f"({size(free)} free there); nothing of this cell was recorded as FINISHED. Free space, or "
            "point checkpoint_dir, hydra.run.dir or tracker.artifact_root at a larger disk, and run it again")


def fail(err: BaseException, cfg, result, out_dir: Path, tracker) -> None:
    """Record `err` as the cell's failure: its reason and the traceback (file and MLflow artefact)."""
    result.status, result.reason = FAILED, reason(err, cfg, result)
    _safe((out_dir / "traceback.txt").write_text, redact(traceback.format_exc()))
    if tracker.run_id and (out_dir / "traceback.txt").exists():
        _safe(tracker.log_artifact, out_dir / "traceback.txt")


def close(result, out_dir: Path, tracker) -> None:
    """Write result.json, log it, then end the MLflow run with the cell's status and reason. If the
    disk fills on the way the cell becomes FAILED; result.json is rewritten FAILED when that still
    fits, else left absent (never half-written), and the run never ends FINISHED."""
    path = _write(result, out_dir)
    if tracker.run_id:
        try:
            if path is not None:
                tracker.log_artifact(path)
        except Exception as err:  # noqa: BLE001 -- a full disk fails the cell; anything else only warns
            if not is_disk_full(err):
                print(f"[harness] warning: log_artifact failed: {err}", flush=True)
            else:  # a result MLflow does not hold is no FINISHED cell
                result.status, result.reason = FAILED, f"logging result.json to MLflow failed: {disk_full(err)}"
                path = _write(result, out_dir)
        if result.reason:
            _safe(tracker.set_tags, {"harness.reason": result.reason[:5000]})
        _safe(tracker.end, result.status)
    torch = sys.modules.get("torch")  # loaded by any cell that got as far as a model
    if result.status == FAILED and torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()  # a multirun's next cell gets the memory back


def _write(result, out_dir: Path) -> Path | None:
    try:
        return result.write(out_dir)
    except Exception as err:  # noqa: BLE001
        if result.status == FAILED and result.reason:
            result.reason = f"{result.reason}; then writing result.json failed: {reason(err, None, result)}"
        else:
            result.status, result.reason = FAILED, f"writing result.json failed: {reason(err, None, result)}"
        print(f"[harness] FAILED: {result.reason}", flush=True)
    try:
        return result.write(out_dir)
    except Exception as err:  # noqa: BLE001 -- atomic: nothing half-written is left behind
        (out_dir / "result.json").unlink(missing_ok=True)  # an earlier write would claim the old status
        print(f"[harness] warning: no result.json written to {out_dir}: {err}", flush=True)
        return None


def _safe(fn, *args) -> None:
    """Recording must not mask the cell's own error (a tracker down at the end, a full disk)."""
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001
        print(f"[harness] warning: {getattr(fn, '__name__', fn)} failed: {err}", flush=True)
