"""MLflow as the lab notebook: skip finished cells, resume killed ones, isolate failures, launchers."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import compose, free_port, harness_cmd, subprocess_env
from harness.run import run

SMOKE = ("model=tiny_bert", "trainer=smoke")


def mlflow_runs(uri: str, experiment: str = "codexglue"):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=500)


def test_finished_cell_is_skipped_fast_unless_rerun(in_tmp):
    first = run(compose([*SMOKE, "seed=11"]), in_tmp / "a")
    assert first.status == "FINISHED"
    start = time.perf_counter()
    again = run(compose([*SMOKE, "seed=11"]), in_tmp / "b")
    assert time.perf_counter() - start < 1.0
    assert again.status == "SKIPPED" and again.mlflow_run_id == first.mlflow_run_id
    assert "already FINISHED" in again.reason
    assert json.loads((in_tmp / "b" / "result.json").read_text())["status"] == "SKIPPED"
    forced = run(compose([*SMOKE, "seed=11", "rerun=true"]), in_tmp / "c")
    assert forced.status == "FINISHED" and forced.mlflow_run_id != first.mlflow_run_id


@pytest.mark.slow
def test_killed_cell_resumes_from_checkpoint_as_one_run(in_tmp):
    args = harness_cmd(*SMOKE, "trainer.max_steps=1500", "trainer.checkpoint_every=20",
                       "trainer.max_train_examples=64", "trainer.log_every=20")
    proc = subprocess.Popen(args, cwd=in_tmp, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(in_tmp.glob("runs/checkpoints/*/checkpoint.pt")) and time.time() < deadline:
        assert proc.poll() is None, "the cell ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(args, cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(next(in_tmp.glob("runs/outputs/*/result.json")).read_text()) \
        if len(list(in_tmp.glob("runs/outputs/*/result.json"))) == 1 else \
        max((json.loads(p.read_text()) for p in in_tmp.glob("runs/outputs/*/result.json")),
            key=lambda r: r["status"] == "FINISHED")
    assert result["status"] == "FINISHED"
    assert result["cost"]["resumed_from_step"] >= 20 and result["cost"]["train_steps"] == 1500
    runs = mlflow_runs(f"sqlite:///{in_tmp}/runs/mlflow.db")
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["harness.resumed"] == "true"
    assert not list(in_tmp.glob("runs/checkpoints/*/checkpoint.pt"))  # cleaned up once finished


def test_failing_cell_does_not_stop_the_sweep(in_tmp):
    bad = in_tmp / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"id": 0, "id1": 1\n')  # invalid JSON
    (bad / "test.jsonl").write_text("")
    proc = subprocess.run(harness_cmd("-m", *SMOKE, f"task.data_dir=null,{bad}"), cwd=in_tmp,
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "1 FINISHED, 1 FAILED, 0 SKIPPED" in proc.stdout
    statuses = sorted(json.loads(p.read_text())["status"] for p in in_tmp.glob("runs/multirun/*/*/result.json"))
    assert statuses == ["FAILED", "FINISHED"]
    failed = [r for r in mlflow_runs(f"sqlite:///{in_tmp}/runs/mlflow.db")
              if r.data.tags.get("harness.status") == "FAILED" and "mlflow.parentRunId" in r.data.tags]
    assert len(failed) == 1
    from mlflow import MlflowClient

    artifacts = {a.path for a in MlflowClient(f"sqlite:///{in_tmp}/runs/mlflow.db").list_artifacts(failed[0].info.run_id)}
    assert "traceback.txt" in artifacts


@pytest.mark.slow
def test_joblib_launcher_runs_cells_in_parallel_under_one_parent(in_tmp):
    proc = subprocess.run(
        harness_cmd("-m", *SMOKE, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(f"sqlite:///{in_tmp}/runs/mlflow.db")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.data.tags["cell"] for c in children} == {"clone_bcb/tiny_bert/lora"}
    assert len({c.data.tags["harness.pid"] for c in children}) == 2  # two worker processes


@pytest.mark.slow
def test_remote_tracking_server(in_tmp):
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{in_tmp}/server.db",
         "--artifacts-destination", str(in_tmp / "server-artifacts")],
        cwd=in_tmp, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        proc = subprocess.run(harness_cmd("-m", *SMOKE, "method=lora,full", f"tracker.uri={uri}"),
                              cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs = mlflow_runs(uri)
        assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
        assert list((in_tmp / "server-artifacts").rglob("result.json"))  # artifacts went through the server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
