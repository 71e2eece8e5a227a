"""A tracking server that cannot be reached at a cell's start, in its middle or at its end: the cell
still trains and writes result.json and its artefacts, records `tracking.held: false`, never waits
past a bound, and `python -m harness.sync` later uploads it as one complete run (never twice)."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, harness_cmd
from harness import journal
from harness.outbox import MLFLOW_BOUNDS, Outbox
from harness.tracking import MlflowTracker
from tracking_outage_helpers import Server, cell_env, killing_overrides

SMOKE = ("model=tiny_bert", "trainer=smoke")


@pytest.fixture
def default_bounds(monkeypatch):
    """The harness's own bounds on MLflow's HTTP retries, whatever the developer's environment says."""
    for key in MLFLOW_BOUNDS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("HARNESS_TRACKING_DEADLINE_S", raising=False)


@pytest.fixture(autouse=True)
def session_store(monkeypatch):
    """The session's MLflow URI, put back afterwards: mlflow.set_tracking_uri (which MlflowTracker calls
    for a dead server here) also rewrites MLFLOW_TRACKING_URI in the environment."""
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(uri)


def _outbox(tmp_path: Path, port: int) -> Outbox:
    return Outbox(MlflowTracker(f"http://127.0.0.1:{port}", "outage-test", str(tmp_path / "art")), tmp_path / "cell")


def _a_cell_of_calls(tracker: Outbox, out_dir: Path) -> None:
    (out_dir / "result.json").write_text("{}")
    tracker.start("cell/seed0", {"config_hash": "h0"})
    tracker.log_params({"trainer.lr": 0.001})
    for step in range(1, 301):
        tracker.log_metrics({"train_loss": 1.0 / step}, step)
    tracker.log_table({"example": [0, 1], "prediction": ["a", "b"]}, "per_example.json")
    tracker.log_artifact(out_dir / "result.json")
    tracker.end("FINISHED")


def test_refused_server_costs_one_bounded_try_then_nothing(tmp_path, default_bounds):
    tracker = _outbox(tmp_path, free_port())  # nothing listens there: connection refused
    began = time.perf_counter()
    previous = tracker.previous("h0")
    first = time.perf_counter() - began
    assert previous.finished is None and previous.interrupted is None
    assert first < 15, f"one refused call took {first:.1f} s"  # MLflow's own defaults retry for minutes
    began = time.perf_counter()
    assert tracker.claim("h0") is None  # no lock to be had: the cell runs
    _a_cell_of_calls(tracker, tmp_path / "cell")
    assert time.perf_counter() - began < 2, "calls after the first failure must not reach for the server"
    state = tracker.state()
    assert state["held"] is False and state["reason"].startswith("previous failed (unreachable)")
    assert tracker.run_id is None
    entries = journal.read(tmp_path / "cell" / "tracking" / "journal.jsonl")
    assert entries.unheld["call"] == "previous"
    assert [c["call"] for c in entries.calls][:3] == ["start", "log_params", "log_metrics"]
    assert [c["step"] for c in entries.calls if c["call"] == "log_metrics"] == list(range(1, 301))
    assert (entries.calls[-1]["call"], entries.calls[-1]["status"]) == ("end", "FINISHED")


def test_server_that_never_answers_is_abandoned_at_the_deadline(tmp_path, default_bounds, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # MLflow would wait this long per try
    monkeypatch.setenv("HARNESS_TRACKING_DEADLINE_S", "2")
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        tracker = _outbox(tmp_path, silent.getsockname()[1])
        began = time.perf_counter()
        tracker.previous("h0")
        assert time.perf_counter() - began < 6
        _a_cell_of_calls(tracker, tmp_path / "cell")
        assert time.perf_counter() - began < 8
    assert tracker.state()["held"] is False
    assert "TimeoutError" in tracker.state()["reason"] and "(unreachable)" in tracker.state()["reason"]


def test_full_disk_is_a_failure_not_an_outage(tmp_path):
    class FullDisk(MlflowTracker):
        def log_artifact(self, path, artifact_path=None):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    tracker = Outbox(FullDisk("sqlite:///unused.db", "x", str(tmp_path)), tmp_path / "cell")
    with pytest.raises(OSError) as raised:
        tracker.log_artifact(tmp_path / "cell" / "result.json")
    assert raised.value.errno == errno.ENOSPC and tracker.state()["held"] is True  # harness.faults fails the cell


def _result(path: Path) -> dict:
    return json.loads(path.read_text())


def _sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.sync", *args], env=cell_env(), capture_output=True,
                          text=True, timeout=300)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name("codexglue")
    return client.search_runs([experiment.experiment_id], max_results=100) if experiment else []


def _cell(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, float]:
    began = time.perf_counter()
    proc = subprocess.run(harness_cmd(*SMOKE, f"hydra.run.dir={tmp_path / 'cell'}", *overrides), cwd=tmp_path,
                          env=cell_env(), capture_output=True, text=True, timeout=600)
    return proc, time.perf_counter() - began


def _assert_trained_unheld(out_dir: Path, call: str) -> dict:
    """FINISHED with its result.json and artefacts, and tracking.held false from `call` on."""
    result = _result(out_dir / "result.json")
    assert result["status"] == "FINISHED", result["reason"]
    assert result["tracking"]["held"] is False and result["tracking"]["reason"].startswith(f"{call} failed")
    assert (out_dir / "predictions" / "predictions.txt").exists() and (out_dir / "adapter").is_dir()
    entries = journal.read(out_dir / "tracking" / "journal.jsonl")
    assert entries.unheld["call"] == call and entries.calls[-1]["call"] == "end"
    return result


@pytest.mark.slow
def test_unreachable_from_the_start_then_synced_with_its_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    began = time.perf_counter()
    proc = subprocess.run(harness_cmd("-m", *SMOKE, "seed=0", f"tracker.uri=http://127.0.0.1:{free_port()}",
                                      f"hydra.sweep.dir={sweep}"),
                          cwd=tmp_path, env=cell_env(), capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - began
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert took < 150, f"a sweep of one cell took {took:.0f} s against a dead server"
    (cell,) = [p.parent for p in sweep.glob("*/result.json")]
    _assert_trained_unheld(cell, "previous")
    assert journal.read(sweep / "tracking" / "journal.jsonl").unheld["call"] == "start"
    server = Server(tmp_path).start()
    try:
        first = _sync("--runs-dir", str(sweep), "--tracking-uri", server.uri)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "2 uploaded" in first.stdout
        runs = _runs(server.uri)
        (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert parent.data.tags["mlflow.runName"] == f"sweep {sweep.name}" and parent.info.status == "FINISHED"
        assert child.info.status == "FINISHED" and child.data.tags["harness.status"] == "FINISHED"
        assert child.data.tags["cell"] == "clone_bcb/tiny_bert/lora" and child.data.params["method.peft.r"] == "8"
        client = _client(server.uri)
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")] == [1, 2, 3]
        assert {"config.yaml", "predictions", "adapter", "result.json", "per_example.json"} <= {
            a.path for a in client.list_artifacts(child.info.run_id)}
        assert {d.dataset.name for d in child.inputs.dataset_inputs} >= {"clone_bcb/train", "clone_bcb/test"}
        result = _result(cell / "result.json")
        assert result["tracking"]["held"] is True and result["mlflow_run_id"] == child.info.run_id
        second = _sync("--runs-dir", str(sweep), "--tracking-uri", server.uri)
        assert second.returncode == 0 and "0 uploaded, 0 completed" in second.stdout
        assert len(_runs(server.uri)) == 2
    finally:
        server.kill()


@pytest.mark.slow
def test_server_killed_mid_training_then_its_run_is_completed(tmp_path):
    server = Server(tmp_path).start()
    try:
        proc, _ = _cell(tmp_path, *killing_overrides(server, "step2"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = _assert_trained_unheld(tmp_path / "cell", "log_metrics")
        server.start()  # back, on the same store
        client = _client(server.uri)
        live = client.get_run(result["mlflow_run_id"])
        assert live.info.status == "RUNNING"  # the run the cell started, with what got through
        assert [m.step for m in client.get_metric_history(live.info.run_id, "train_loss")] == [1]
        first = _sync("--runs-dir", str(tmp_path))  # into the store the cell was meant for
        assert first.returncode == 0 and "1 completed" in first.stdout, first.stdout + first.stderr[-2000:]
        (run,) = _runs(server.uri)
        assert run.info.run_id == live.info.run_id and run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3]
        assert "f1" in run.data.metrics and "predictions" in {a.path for a in client.list_artifacts(run.info.run_id)}
        again = _sync("--runs-dir", str(tmp_path))
        assert again.returncode == 0 and "0 uploaded, 0 completed" in again.stdout
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3 and len(_runs(server.uri)) == 1
    finally:
        server.kill()


@pytest.mark.slow
def test_server_killed_at_the_end_then_its_run_is_ended_without_duplicates(tmp_path):
    server = Server(tmp_path).start()
    try:
        proc, _ = _cell(tmp_path, *killing_overrides(server, "end"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = _assert_trained_unheld(tmp_path / "cell", "end")
        server.start()
        client = _client(server.uri)
        live = client.get_run(result["mlflow_run_id"])
        assert live.info.status == "RUNNING" and "f1" in live.data.metrics
        held = {key: len(client.get_metric_history(live.info.run_id, key)) for key in live.data.metrics}
        first = _sync("--runs-dir", str(tmp_path))
        assert first.returncode == 0 and "1 completed" in first.stdout, first.stdout + first.stderr[-2000:]
        (run,) = _runs(server.uri)
        assert run.info.status == "FINISHED" and run.data.tags["harness.status"] == "FINISHED"
        assert {key: len(client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics} == held
        table = json.loads(Path(client.download_artifacts(run.info.run_id, "per_example.json", str(tmp_path)))
                           .read_text())
        assert len(table["data"]) == 16  # log_table appends: a replayed table would hold 32 rows
        assert _result(tmp_path / "cell" / "result.json")["tracking"]["held"] is True
        assert "0 uploaded, 0 completed" in _sync("--runs-dir", str(tmp_path)).stdout
    finally:
        server.kill()
