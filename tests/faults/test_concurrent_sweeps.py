"""Two sweeps started at once on one sqlite store, each with two joblib workers: no run lost, none
duplicated, every cell trained exactly once (the other sweep skips it), both sweeps exit 0."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from conftest import harness_cmd, subprocess_env
from harness import liveness

SMOKE = ("model=tiny_bert", "trainer=smoke")
SEEDS = (31, 32, 33)


@pytest.mark.slow
def test_two_parallel_sweeps_on_one_store_train_each_cell_once(in_tmp):
    from mlflow import MlflowClient

    def sweep(name: str) -> subprocess.Popen:
        # Each sweep its own directory: two sweeps started in the same second share the default one.
        args = harness_cmd("-m", *SMOKE, f"seed={','.join(map(str, SEEDS))}", "hydra/launcher=joblib",
                           "hydra.launcher.n_jobs=2", f"hydra.sweep.dir=runs/multirun/{name}")
        return subprocess.Popen(args, cwd=in_tmp, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    procs = {name: sweep(name) for name in ("a", "b")}  # same working dir: one runs/mlflow.db
    outs = {name: p.communicate(timeout=1500)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"sweep {name}:\n{outs[name][-4000:]}"

    results = [json.loads(p.read_text()) for p in in_tmp.glob("runs/multirun/*/*/result.json")]
    assert len(results) == 2 * len(SEEDS)  # every cell of both sweeps left its result
    finished = Counter(r["seed"] for r in results if r["status"] == "FINISHED")
    assert finished == Counter(SEEDS), results  # each cell trained by exactly one sweep
    for r in (r for r in results if r["status"] == "SKIPPED"):
        assert r["reason"].startswith(("already FINISHED as MLflow run", "running elsewhere (host ")), r["reason"]

    client = MlflowClient(f"sqlite:///{in_tmp}/runs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("codexglue").experiment_id], max_results=500)
    parents = {r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags}
    cells = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert Counter(r.data.tags["config_hash"] for r in cells) == Counter(
        {r["config_hash"]: 1 for r in results if r["status"] == "FINISHED"})  # one run per cell, none lost
    assert {r["mlflow_run_id"] for r in results if r["status"] == "FINISHED"} == {r.info.run_id for r in cells}
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} <= parents
    assert all(r.data.tags["harness.status"] == "FINISHED" for r in cells)
    assert client.search_model_versions(f"name = '{liveness.LOCKS_MODEL}'") == []  # every lock given back
