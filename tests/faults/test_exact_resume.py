"""Exact resume: a cell killed mid-training goes on from its last checkpoint, at the exact batch, with
every generator where it was, in the same MLflow run, logging each step once, and ends with exactly
the numbers of an uninterrupted run (CPU, same seed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import transformers
from hydra.utils import instantiate

from conftest import compose, harness_cmd, subprocess_env
from harness.env import pick_device
from harness.models import load_model
from harness.train import train
from tasks.encoding import PadCollator

CPU = pick_device("cpu")
# LoRA's dropout (0.05) and attention dropout draw from torch's generator: without its state a resume
# would draw other masks and train to other numbers.
DROPOUT = "+model.build.config.attention_dropout=0.1"


class Killed(Exception):
    """Stands for SIGKILL in-process: training stops at a step, as a dead process would."""


def _trainer(max_steps: int):
    # 24 examples at batch 4: 6 steps an epoch, so checkpoints land mid-epoch (3, 9) and at an epoch's end (6);
    # a log window of 4 steps is cut by a checkpoint every 3, so the open window must be saved too.
    return compose(["model=tiny_llama", "method=lora", "trainer=smoke", f"trainer.max_steps={max_steps}",
                    "trainer.batch_size=4", "trainer.checkpoint_every=3", "trainer.log_every=4", DROPOUT])


FEATURES = [{"input_ids": [i, *range(10, 14 + i % 9)], "labels": [i, *range(10, 14 + i % 9)]} for i in range(24)]


def _train(cfg, checkpoint_dir: Path | None = None, kill_at: int | None = None):
    """A fresh process's training: seeded as harness.run seeds a cell, the model built anew."""
    transformers.set_seed(cfg.seed)
    model, tokenizer = load_model(cfg.model, cfg.method, "causal_lm", CPU)
    logged = []

    def kill(model, step, total):
        if step == kill_at:
            raise Killed

    try:
        stats = train(model, FEATURES, PadCollator(tokenizer.pad_token_id), cfg.trainer,
                      instantiate(cfg.method.optimizer), CPU, seed=5, log=lambda m, step: logged.append((step, m)),
                      step_hooks=(kill,), checkpoint_dir=checkpoint_dir)
    except Killed:
        return None, logged, None
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return stats, logged, weights


@pytest.mark.parametrize("kill_at", [5, 8])   # resumes from step 3 (mid-epoch) and step 6 (an epoch's end)
def test_a_resumed_train_equals_an_uninterrupted_one_only_with_its_rng_state(tmp_path, monkeypatch, kill_at):
    cfg = _trainer(12)
    whole, whole_log, whole_weights = _train(cfg)
    _train(cfg, tmp_path / "a", kill_at=kill_at)
    resumed, resumed_log, resumed_weights = _train(cfg, tmp_path / "a")
    assert resumed.resumed_from_step == (kill_at // 3) * 3
    assert resumed.losses == whole.losses                         # every logged loss, bit for bit
    assert resumed_log == [(s, l) for s, l in whole_log if s > resumed.resumed_from_step]
    assert all(torch.equal(resumed_weights[n], w) for n, w in whole_weights.items())
    assert (resumed.steps, resumed.examples, resumed.tokens) == (whole.steps, whole.examples, whole.tokens)

    # the same resume without the generators' states: other dropout masks, other numbers
    _train(cfg, tmp_path / "b", kill_at=kill_at)
    monkeypatch.setattr("harness.checkpoint.set_rng_state", lambda state: None)
    blind, _, blind_weights = _train(cfg, tmp_path / "b")
    assert blind.resumed_from_step == resumed.resumed_from_step
    assert blind.losses[-1] != whole.losses[-1]
    assert not all(torch.equal(blind_weights[n], w) for n, w in whole_weights.items())


def test_a_resumed_mlflow_run_logs_each_step_once(in_tmp):
    from mlflow import MlflowClient

    from harness.tracking import MlflowTracker

    uri = f"sqlite:///{in_tmp}/own.db"
    first = MlflowTracker(uri, "resume", str(in_tmp / "art"))
    first.start("cell", {"config_hash": "x"})
    for step in (1, 2, 3):
        first.log_metrics({"train_loss": step / 10}, step)
    second = MlflowTracker(uri, "resume", str(in_tmp / "art"))
    second.start("cell", {"config_hash": "x"}, resume_run_id=first.run_id)
    for step in (2, 3, 4):   # the steps after the checkpoint at 1, trained again
        second.log_metrics({"train_loss": step / 10, "lr": 0.1}, step)
    history = MlflowClient(uri).get_metric_history(first.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
    assert [m.step for m in MlflowClient(uri).get_metric_history(first.run_id, "lr")] == [2, 3, 4]
    first._heartbeat.stop()   # the "killed" process's heartbeat dies with it
    second.end("FINISHED")


STEPS = 40
CELL = ("model=tiny_llama", "trainer=smoke", f"trainer.max_steps={STEPS}", "trainer.checkpoint_every=5",
        "trainer.log_every=1", "trainer.max_train_examples=64", DROPOUT)   # 16 steps an epoch


def _store(cwd: Path) -> str:
    return f"sqlite:///{cwd}/runs/mlflow.db"


def _runs(cwd: Path):
    from mlflow import MlflowClient

    client = MlflowClient(_store(cwd))
    return client, client.search_runs([client.get_experiment_by_name("codexglue").experiment_id])


def _history(cwd: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    client, _ = _runs(cwd)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _result(cwd: Path) -> dict:
    found = [json.loads(p.read_text()) for p in cwd.glob("runs/outputs/*/result.json")]
    assert len(found) == 1, found
    return found[0]


def _finish(cwd: Path) -> None:
    done = subprocess.run(harness_cmd(*CELL), cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _kill_after_a_checkpoint(cwd: Path) -> int:
    """Start the cell, SIGKILL it two steps after a checkpoint was written; the checkpoint's step."""
    with open(cwd / "killed.err", "w") as err:
        proc = subprocess.Popen(harness_cmd(*CELL), cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=err, text=True)
    for line in proc.stdout:
        if line.startswith("[harness] step ") and list(cwd.glob("runs/checkpoints/*/checkpoint.pt")):
            step = int(line.split()[2].split("/")[0])
            if step % 5 == 2:      # steps after the checkpoint are logged: the resume trains them again
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, \
        f"the cell ended before it was killed: {(cwd / 'killed.err').read_text()[-2000:]}"
    saved = torch.load(next(cwd.glob("runs/checkpoints/*/checkpoint.pt")), weights_only=False)
    return saved["progress"]["stats"]["steps"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_sigkilled_cell_resumes_in_its_mlflow_run_and_ends_as_if_never_killed(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    _finish(whole)
    checkpoint_step = _kill_after_a_checkpoint(killed)
    assert 0 < checkpoint_step < STEPS
    _, before = _runs(killed)
    assert [r.info.status for r in before] == ["RUNNING"]
    run_id = before[0].info.run_id
    assert max(s for s, _ in _history(killed, run_id, "train_loss")) > checkpoint_step
    time.sleep(0.1)
    _finish(killed)

    _, after = _runs(killed)
    assert [(r.info.run_id, r.info.status) for r in after] == [(run_id, "FINISHED")]   # the same run, resumed
    assert after[0].data.tags["harness.resumed"] == "true"
    _, [reference] = _runs(whole)
    for key in ("train_loss", "lr"):
        history = _history(killed, run_id, key)
        assert [s for s, _ in history] == list(range(1, STEPS + 1))              # each step logged once
        assert history == _history(whole, reference.info.run_id, key)            # the same curve, exactly
    resumed, uninterrupted = _result(killed), _result(whole)
    assert resumed["status"] == uninterrupted["status"] == "FINISHED"
    assert resumed["cost"]["resumed_from_step"] == checkpoint_step
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert resumed["confidence_intervals"] == uninterrupted["confidence_intervals"]
    for key in ("train_steps", "train_tokens", "padding_share"):
        assert resumed["cost"][key] == uninterrupted["cost"][key]
    assert {k: v for k, v in after[0].data.metrics.items() if k in resumed["metrics"]} == \
        {k: v for k, v in reference.data.metrics.items() if k in uninterrupted["metrics"]}
    assert not list(killed.glob("runs/checkpoints/*/checkpoint.pt"))            # discarded once FINISHED
