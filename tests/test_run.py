"""run(cfg) end to end on tiny models: trains, predicts, scores, records result.json and MLflow."""
from __future__ import annotations

import json
import math
import os

import pytest

from conftest import compose
from harness.run import run

CONTRACT = ("status", "task", "model", "method", "seed", "config_hash", "metrics", "primary_metric",
            "primary_value", "cost", "mlflow_run_id", "reason")
COST = ("trainable_params", "total_params", "trainable_share", "peak_memory_bytes", "train_seconds",
        "tokens_per_second", "adapter_bytes", "base_weight_bytes")


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama", "tiny_t5"])
def test_cell_runs_end_to_end_and_writes_the_contract(model, in_tmp):
    cfg = compose([f"model={model}", "trainer=smoke", "tracker=mlflow"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    record = json.loads((in_tmp / "cell" / "result.json").read_text())
    for key in CONTRACT:
        assert key in record
    for key in COST:
        assert record["cost"][key] >= 0, key
    assert record["primary_metric"] == "f1"
    assert record["primary_value"] == record["metrics"]["f1"]
    lo, hi = record["confidence_intervals"]["f1"]
    assert lo <= record["metrics"]["f1"] <= hi
    assert 0 < record["cost"]["trainable_share"] < 1
    assert record["cost"]["train_steps"] == 3
    # the predictions file is in the official BigCloneBench format and rescorable
    lines = (in_tmp / "cell" / "predictions" / "predictions.txt").read_text().splitlines()
    assert len(lines) == 16 and all(len(line.split()) == 3 for line in lines)


def test_cell_is_recorded_in_mlflow(in_tmp):
    from mlflow import MlflowClient

    cfg = compose(["model=tiny_bert", "trainer=smoke", "seed=7"])
    result = run(cfg, in_tmp / "cell")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    recorded = client.get_run(result.mlflow_run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name == "clone_bcb/tiny_bert/lora/seed7"
    assert recorded.data.tags["cell"] == "clone_bcb/tiny_bert/lora"
    assert {"git_commit", "host", "data_digest", "version.torch", "version.peft"} <= set(recorded.data.tags)
    assert {d.dataset.name for d in recorded.inputs.dataset_inputs} == {"clone_bcb/train", "clone_bcb/validation",
                                                                        "clone_bcb/test"}
    assert math.isclose(recorded.data.metrics["f1"], result.metrics["f1"])
    assert recorded.data.params["method.peft.r"] == "8"
    assert recorded.data.tags["config_hash"] == result.config_hash
    assert [m.step for m in client.get_metric_history(result.mlflow_run_id, "train_loss")] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"result.json", "config.yaml", "predictions"} <= artifacts
    # artifacts are kept under runs/, not in ./mlruns
    location = client.get_experiment_by_name("codexglue").artifact_location
    assert location.endswith("runs/mlartifacts/codexglue") and not (in_tmp / "mlruns").exists()


def test_bad_data_fails_before_training_and_is_not_finished(in_tmp):
    data = in_tmp / "data"
    data.mkdir()
    good = {"id": 0, "id1": 1, "id2": 2, "func1": "a", "func2": "b", "label": True}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": 1, "label": 3}) + "\n")
    (data / "test.jsonl").write_text(json.dumps(good) + "\n")
    cfg = compose(["model=tiny_bert", "trainer=smoke", "tracker=none", f"task.data_dir={data}"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FAILED"
    assert "train.jsonl:2" in result.reason and "'label'" in result.reason
    assert not (in_tmp / "cell" / "adapter").exists()
    assert (in_tmp / "cell" / "traceback.txt").exists()


def test_same_config_same_hash_other_seed_other_hash():
    from harness.config import config_hash

    assert config_hash(compose([])) == config_hash(compose(["tracker=none"]))
    assert config_hash(compose([])) != config_hash(compose(["seed=1"]))


def test_hf_offline_defaults_are_set_unless_the_user_set_them(monkeypatch):
    import importlib
    import os

    import harness

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    importlib.reload(harness)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_DATASETS_OFFLINE"] == "0"
