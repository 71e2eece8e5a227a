"""A Hydra multirun of two cells in a subprocess: one parent MLflow run, two children, a comparison."""
from __future__ import annotations

import json
import subprocess

from conftest import harness_cmd, subprocess_env


def test_multirun_lora_qlora_under_one_parent(in_tmp):
    proc = subprocess.run(
        harness_cmd("-m", "method=lora,qlora", "model=tiny_bert", "trainer=smoke"),
        cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(in_tmp.glob("runs/multirun/*/*/result.json"))
    records = [json.loads(p.read_text()) for p in results]
    assert sorted(r["method"] for r in records) == ["lora", "qlora"]
    assert all(r["status"] == "FINISHED" for r in records)
    # QLoRA's base weights are 4-bit: much smaller than LoRA's fp32 base on the same model
    by_method = {r["method"]: r for r in records}
    assert by_method["qlora"]["cost"]["base_weight_bytes"] < by_method["lora"]["cost"]["base_weight_bytes"]
    assert "2 FINISHED, 0 FAILED, 0 SKIPPED" in proc.stdout
    assert "| clone_bcb/tiny_bert/lora/seed0 |" in proc.stdout
    assert "| clone_bcb/tiny_bert/qlora/seed0 |" in proc.stdout

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{in_tmp}/runs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("codexglue").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED"
