"""`python -m harness.sync` uploads what the tracker did not hold, from the cells' journals: a sweep and
its cells as one parent with its children, a partial run completed without duplicate points, each
exactly once however often it runs; cells still running are left alone; a dead target stops it.

The journals are written by the real harness.outbox over an MlflowTracker whose server cannot be
reached (nothing listens on its port); the target is this test session's MLflow store."""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from harness import journal
from harness.outbox import SYNC_TAG, Outbox
from harness.sync import Sync, main
from conftest import free_port
from harness.tracking import MlflowTracker


@pytest.fixture
def experiment() -> str:
    return f"sync-{uuid.uuid4().hex[:8]}"  # the session store is shared: each test its own experiment


@pytest.fixture
def target(monkeypatch) -> str:
    """The session's MLflow URI, put back afterwards: mlflow.set_tracking_uri (which MlflowTracker calls
    for a dead server here) also rewrites MLFLOW_TRACKING_URI in the environment."""
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(uri)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _dead(tmp_path: Path, out_dir: Path, experiment: str, scope: str = "cell") -> Outbox:
    tracker = MlflowTracker(f"http://127.0.0.1:{free_port()}", experiment, str(tmp_path / "artifacts"))
    return Outbox(tracker, out_dir, scope)


def _cell(tracker: Outbox, out_dir: Path, seed: int, rerun: bool = False) -> None:
    """What harness.run records for a cell, against a tracker that does not answer."""
    tracker.previous(f"hash{seed}")
    tracker.start(f"cell/seed{seed}", {"config_hash": f"hash{seed}", "cell": "cell"})
    tracker.log_params({"seed": seed, "rerun": rerun, "trainer.lr": 0.001, "long": "x" * 7000})
    tracker.log_dataset("task/train", str(out_dir), f"digest{seed}-train", "train")
    for step in (1, 2, 3):
        tracker.log_metrics({"train_loss": 1.0 / step, "lr": 0.1 * step}, step)
    tracker.log_metrics({"f1": 0.5 + seed / 10})
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    (out_dir / "predictions" / "predictions.txt").write_text("1\t2\t1\n")
    tracker.log_table({"example": [0, 1, 2], "prediction": ["a", "b", "c"]}, "per_example.json")
    tracker.log_artifact(out_dir / "predictions", "predictions")
    (out_dir / "result.json").write_text(json.dumps({"status": "FINISHED", "mlflow_run_id": tracker.run_id,
                                                     "tracking": tracker.state()}))
    tracker.log_artifact(out_dir / "result.json")
    tracker.end("FINISHED")


def _by_sync_id(target: str, tracker: Outbox, experiment: str) -> list:
    client = _client(target)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.`{SYNC_TAG}` = '{tracker.sync_id}'") if found else []


def test_a_sweep_and_its_cells_are_uploaded_once_as_parent_and_children(tmp_path, experiment, target):
    sweep_dir = tmp_path / "sweep"
    sweep = _dead(tmp_path, sweep_dir, experiment, scope="sweep")
    sweep.start("sweep s", {"sweep_dir": str(sweep_dir)})
    cells = {seed: _dead(tmp_path, sweep_dir / f"{seed}_cell", experiment) for seed in (0, 1)}
    for seed, tracker in cells.items():
        _cell(tracker, sweep_dir / f"{seed}_cell", seed)
    (sweep_dir / "comparison.md").write_text("| cell |\n")
    sweep.log_artifact(sweep_dir / "comparison.md")
    sweep.end("FINISHED")
    shutil.rmtree(sweep_dir / "1_cell" / "predictions")  # gone before the sync

    report = Sync(tmp_path, target).run()
    assert (len(report.lines["uploaded"]), report.lines["failed"]) == (3, [])
    client = _client(target)
    (parent,) = _by_sync_id(target, sweep, experiment)
    assert parent.info.status == "FINISHED" and parent.data.tags["mlflow.runName"] == "sweep s"
    assert "comparison.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    for seed, tracker in cells.items():
        (run,) = _by_sync_id(target, tracker, experiment)
        entries = journal.read(tracker.journal.path)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["harness.status"] == "FINISHED"
        assert run.info.start_time == entries.first("start")["ts"] and run.info.end_time == entries.first("end")["ts"]
        assert run.data.params["seed"] == str(seed) and run.data.tags["truncated_params"] == "long"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        logged = [c for c in entries.calls if c["call"] == "log_metrics" and c["step"]]
        assert [(m.step, m.value, m.timestamp) for m in history] == [
            (c["step"], c["metrics"]["train_loss"], c["ts"]) for c in logged]
        assert run.data.metrics["f1"] == pytest.approx(0.5 + seed / 10)
        assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"task/train"}
        assert {"per_example.json", "result.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        result = json.loads((sweep_dir / f"{seed}_cell" / "result.json").read_text())
        assert result["tracking"]["held"] is True and result["mlflow_run_id"] == run.info.run_id
        assert "unreachable" in result["tracking"]["unheld_live"]
    missing = _by_sync_id(target, cells[1], experiment)[0]
    assert missing.data.tags["harness.sync.missing"] == "predictions"  # said, not silently dropped

    again = Sync(tmp_path, target).run()
    assert sum(len(v) for v in again.lines.values()) == 0
    assert [len(_by_sync_id(target, t, experiment)) for t in (sweep, *cells.values())] == [1, 1, 1]


def test_a_partial_run_is_completed_without_duplicate_points(tmp_path, experiment, target):
    from mlflow import MlflowClient

    out_dir = tmp_path / "cell"
    tracker = Outbox(MlflowTracker(target, experiment, str(tmp_path / "artifacts")), out_dir)
    tracker.start("cell/seed0", {"config_hash": "partial"})
    tracker.log_params({"seed": 0})
    tracker.log_metrics({"train_loss": 1.0}, 1)
    tracker.log_table({"example": [0, 1], "prediction": ["a", "b"]}, "per_example.json")
    tracker.inner._client = MlflowClient(f"http://127.0.0.1:{free_port()}")  # the server dies here
    for step in (2, 3):
        tracker.log_metrics({"train_loss": 1.0 / step}, step)
    (out_dir / "result.json").write_text(json.dumps({"status": "FINISHED", "tracking": tracker.state()}))
    tracker.log_artifact(out_dir / "result.json")
    tracker.end("FINISHED")
    live = tracker.run_id
    assert tracker.state()["held"] is False and _client(target).get_run(live).info.status == "RUNNING"

    report = Sync(tmp_path, target).run()
    assert len(report.lines["completed"]) == 1, report.lines
    (run,) = _by_sync_id(target, tracker, experiment)
    client = _client(target)
    assert run.info.run_id == live and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(live, "train_loss")] == [1, 2, 3]
    table = json.loads(Path(client.download_artifacts(live, "per_example.json", str(tmp_path))).read_text())
    assert len(table["data"]) == 2  # not appended to a second time
    assert sum(len(v) for v in Sync(tmp_path, target).run().lines.values()) == 0


def test_a_cell_that_has_not_ended_is_left_alone(tmp_path, experiment, target):
    tracker = _dead(tmp_path, tmp_path / "cell", experiment)
    tracker.previous("h")
    tracker.start("cell/seed0", {"config_hash": "h"})
    tracker.log_metrics({"train_loss": 1.0}, 1)
    report = Sync(tmp_path, target).run()
    assert len(report.lines["open"]) == 1 and "has not ended" in report.lines["open"][0]
    assert _by_sync_id(target, tracker, experiment) == []


def test_a_target_that_cannot_be_reached_stops_the_sync_quickly(tmp_path, experiment, target, capsys):
    tracker = _dead(tmp_path, tmp_path / "cell", experiment)
    _cell(tracker, tmp_path / "cell", 0)
    began = time.perf_counter()
    assert main(["--runs-dir", str(tmp_path), "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 1
    assert time.perf_counter() - began < 20
    assert "does not answer" in capsys.readouterr().err
    assert journal.read(tracker.journal.path).synced == []  # nothing marked: the next sync tries again


def test_a_cell_whose_config_was_finished_already_is_not_uploaded_twice(tmp_path, experiment, target):
    client = _client(target)
    exp = client.create_experiment(experiment, artifact_location=(tmp_path / "artifacts").as_uri())
    earlier = client.create_run(exp, tags={"config_hash": "hash0", "harness.status": "FINISHED"}).info.run_id
    client.set_terminated(earlier, "FINISHED")
    twin = _dead(tmp_path, tmp_path / "twin", experiment)  # ran while the store could not say it was done
    _cell(twin, tmp_path / "twin", 0)
    forced = _dead(tmp_path, tmp_path / "forced", experiment)
    _cell(forced, tmp_path / "forced", 0, rerun=True)  # run again on purpose

    report = Sync(tmp_path, target).run()
    assert len(report.lines["duplicate"]) == 1 and str(tmp_path / "twin") in report.lines["duplicate"][0]
    assert len(report.lines["uploaded"]) == 1 and str(tmp_path / "forced") in report.lines["uploaded"][0]
    assert _by_sync_id(target, twin, experiment) == []
    result = json.loads((tmp_path / "twin" / "result.json").read_text())
    (uploaded,) = _by_sync_id(target, forced, experiment)
    assert result["tracking"]["synced"]["duplicate_of"] == result["mlflow_run_id"] in {earlier, uploaded.info.run_id}
    assert sum(len(v) for v in Sync(tmp_path, target).run().lines.values()) == 0


def test_a_cell_held_live_is_put_under_its_sweep_once_that_is_uploaded(tmp_path, experiment, target):
    sweep = _dead(tmp_path, tmp_path / "sweep", experiment, scope="sweep")  # no parent run: the cell has none
    sweep.start("sweep s", {"sweep_dir": str(tmp_path / "sweep")})
    cell = Outbox(MlflowTracker(target, experiment, str(tmp_path / "artifacts")), tmp_path / "sweep" / "0_cell")
    cell.start("cell/seed0", {"config_hash": "held0"})  # the server was back for the cell
    cell.log_metrics({"f1": 1.0})
    cell.end("FINISHED")
    sweep.end("FINISHED")
    assert cell.state()["held"] is True and sweep.state()["held"] is False

    report = Sync(tmp_path, target).run()
    assert (len(report.lines["uploaded"]), len(report.lines["linked"])) == (1, 1)
    (parent,) = _by_sync_id(target, sweep, experiment)
    assert _client(target).get_run(cell.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert sum(len(v) for v in Sync(tmp_path, target).run().lines.values()) == 0
