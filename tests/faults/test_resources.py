"""Running out of a resource ends a cell FAILED with a reason to act on, in result.json and in MLflow:
a diverged loss names its step; out of memory (GPU or CPU) names the memory estimate and the setting
to lower; a full disk names the file, leaves no half-written result.json or checkpoint and never a
FINISHED run. Each fault is injected."""
from __future__ import annotations

import errno
import itertools
import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import harness.run
import harness.train
from conftest import compose
from harness.report import _fmt_bytes as size
from harness.results import Result
from harness.run import run

CELL = ("trainer=smoke",)
_seeds = itertools.count(7100)   # a seed per cell: the session's MLflow store never holds a FINISHED twin


def _cell(*overrides: str, model: str = "tiny_bert"):
    return compose([f"model={model}", *CELL, f"seed={next(_seeds)}", *overrides])


def _mlflow(result):
    from mlflow import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(result.mlflow_run_id)


def _assert_failed(result, out_dir: Path, *phrases: str) -> dict:
    """FAILED with the phrases in its reason, in result.json and in MLflow (status, tags)."""
    assert result.status == "FAILED"
    for phrase in phrases:
        assert phrase in result.reason
    recorded = _mlflow(result)
    assert recorded.info.status == "FAILED" and recorded.data.tags["harness.status"] == "FAILED"
    assert recorded.data.tags["harness.reason"] == result.reason
    if (out_dir / "result.json").exists():
        on_disk = json.loads((out_dir / "result.json").read_text())
        assert on_disk["status"] == "FAILED" and on_disk["reason"] == result.reason
        return on_disk
    return {}


def _poison_loss(monkeypatch, from_call: int, make):
    """harness.run's train with a loss function that, from its `from_call`-th call, returns
    make(loss) (or raises what make raises): the fault arrives at a known micro-batch."""
    real = harness.train.train

    def poisoned(*args, loss_fn, **kwargs):
        calls = itertools.count(1)

        def loss(model, batch):
            value = loss_fn(model, batch)
            return make(value) if next(calls) >= from_call else value
        return real(*args, loss_fn=loss, **kwargs)
    monkeypatch.setattr(harness.run, "train", poisoned)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_loss_is_failed_diverged_at_its_step(in_tmp, monkeypatch, bad):
    _poison_loss(monkeypatch, 3, lambda loss: loss * bad)
    result = run(_cell(), in_tmp / "out")
    _assert_failed(result, in_tmp / "out", "TrainingDiverged", "training diverged at step 3", "method.optimizer.lr")
    assert not (in_tmp / "out" / "adapter").exists()      # nothing of a finished cell was written


def _raise(err):
    def fail(*args, **kwargs):
        raise err
    return fail


@pytest.mark.parametrize("model, err", [
    ("tiny_bert", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")),              # a GPU
    ("tiny_llama", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")),
    ("tiny_bert", MemoryError()),                                                                    # Python, CPU
    ("tiny_bert", RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")),
], ids=["cuda", "cuda-decoder", "python", "torch-cpu"])
def test_out_of_memory_in_training_is_failed_with_the_estimate_and_what_to_lower(in_tmp, monkeypatch, model, err):
    _poison_loss(monkeypatch, 2, _raise(err))
    result = run(_cell(model=model), in_tmp / "out")
    estimate = result.cost["estimated_peak_memory_bytes"]
    assert estimate and estimate > 0
    _assert_failed(result, in_tmp / "out", "out of memory on cpu while training",
                   f"harness.estimate puts this cell's training peak at {size(estimate)}",
                   "lower trainer.batch_size (now 4", "trainer.grad_accum", "trainer.gradient_checkpointing=true",
                   "model.max_length (now", "the machine has", type(err).__name__)
    assert json.loads((in_tmp / "out" / "result.json").read_text())["cost"]["estimated_peak_memory_bytes"] == estimate


def test_out_of_memory_while_predicting_names_the_eval_batch_size(in_tmp, monkeypatch):
    @contextmanager
    def metered():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        yield
    monkeypatch.setattr(harness.run, "metered", metered)
    result = run(_cell(), in_tmp / "out")
    _assert_failed(result, in_tmp / "out", "out of memory on cpu while predicting",
                   "lower trainer.eval_batch_size (now 8)", "harness.estimate puts this cell's training peak at")


def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_a_full_disk_while_checkpointing_is_failed_and_keeps_the_last_whole_checkpoint(in_tmp, monkeypatch):
    real_save, saves = torch.save, itertools.count(1)

    def save(obj, file, *args, **kwargs):
        if "checkpoint.pt" not in str(getattr(file, "name", file)) or next(saves) < 2:
            return real_save(obj, file, *args, **kwargs)
        file.write(b"PK\x03\x04 half a checkpoint")   # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", save)
    result = run(_cell("trainer.checkpoint_every=1"), in_tmp / "out")
    _assert_failed(result, in_tmp / "out", "disk full (ENOSPC) while writing", "checkpoint.pt", "free there",
                   "checkpoint_dir")
    [folder] = (in_tmp / "runs" / "checkpoints").iterdir()
    assert [p.name for p in folder.iterdir()] == ["checkpoint.pt"]          # no temporary file left
    saved = torch.load(folder / "checkpoint.pt", weights_only=False)         # the step-1 one, whole
    assert saved["progress"]["stats"]["steps"] == 1


def test_a_full_disk_while_logging_artifacts_is_failed(in_tmp, monkeypatch):
    from harness.tracking import MlflowTracker

    real = MlflowTracker.log_artifact

    def log_artifact(self, path, artifact_path=None):
        if Path(path).name == "predictions":
            raise _enospc(in_tmp / "runs" / "mlartifacts" / "predictions" / "gold.txt")
        return real(self, path, artifact_path)
    monkeypatch.setattr(MlflowTracker, "log_artifact", log_artifact)
    result = run(_cell(), in_tmp / "out")
    _assert_failed(result, in_tmp / "out", "disk full (ENOSPC) while writing", "gold.txt")
    assert (in_tmp / "out" / "result.json").exists()


@pytest.mark.parametrize("failing", ["every", "first"])
def test_a_full_disk_while_writing_result_json_leaves_no_half_file_and_no_finished_run(in_tmp, monkeypatch,
                                                                                     failing):
    real, writes = Path.write_text, itertools.count(1)

    def write_text(self, data, *args, **kwargs):
        if self.name.startswith("result.json.tmp") and (failing == "every" or next(writes) == 1):
            real(self, data[: len(data) // 2], *args, **kwargs)   # half of it, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", write_text)
    out = in_tmp / "out"
    result = run(_cell(), out)        # never raises
    on_disk = _assert_failed(result, out, "writing result.json failed: disk full (ENOSPC) while writing",
                             str(out / "result.json"))
    assert not list(out.glob("result.json.tmp*"))
    if failing == "every":
        assert not (out / "result.json").exists()
    else:                             # the FAILED record fitted: it says so, with the scores it had
        assert on_disk["metrics"] == result.metrics and on_disk["metrics"]


def test_a_failed_rewrite_leaves_the_previous_result_json_whole(tmp_path, monkeypatch):
    first = Result(status="FINISHED", task="t", model="m", method="x", seed=0, config_hash="h")
    first.write(tmp_path)

    def full(self, data, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_text", full)
    second = Result(status="FAILED", task="t", model="m", method="x", seed=0, config_hash="h", reason="r")
    with pytest.raises(OSError) as caught:
        second.write(tmp_path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "result.json")
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "FINISHED"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
