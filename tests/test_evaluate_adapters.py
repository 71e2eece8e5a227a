"""python -m harness.evaluate: the adapters of smoke cells that share a base, scored on one loaded
base exactly as their cells scored them (from the cells' directories and from MLflow run ids)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

from conftest import ROOT, compose, subprocess_env
from harness.evaluate import main
from harness.run import run

# seed 3: the session shares one MLflow store, and test_run.py runs the seed-0 cell of this config
SMOKE = ["model=tiny_bert", "task=clone_bcb", "trainer=smoke", "tracker=mlflow", "seed=3"]


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> dict[str, Path]:
    """Two smoke cells on one base (LoRA, IA3), recorded in the session's MLflow store."""
    root = tmp_path_factory.mktemp("cells")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        out = {}
        for method in ("lora", "ia3"):
            result = run(compose([*SMOKE, f"method={method}"]), root / method)
            assert result.status == "FINISHED", result.reason
            out[method] = root / method
    lora, ia3 = (_cell_predictions(out[m]) for m in ("lora", "ia3"))
    assert lora != ia3  # so that scoring one adapter with the other one's weights would show
    return out


def _cell_predictions(cell: Path) -> str:
    return (cell / "predictions" / "predictions.txt").read_text()


def _result(cell: Path) -> dict:
    return json.loads((cell / "result.json").read_text())


def _records(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _client():
    from mlflow import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def test_adapters_score_as_their_cells_on_one_loaded_base(cells, tmp_path, monkeypatch, capsys):
    loads = []
    real = transformers.AutoModelForSequenceClassification.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained",
                        lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    assert main(["--adapters", str(cells["lora"]), str(cells["ia3"]), "--out", str(tmp_path)]) == 0
    records = _records(capsys)
    assert len(loads) == 1  # the base weights loaded once for both adapters
    assert [r["method"] for r in records] == ["lora", "ia3"]
    for record, method in zip(records, ("lora", "ia3")):
        cell = _result(cells[method])
        assert record["metrics"] == cell["metrics"]  # classification: exactly the cell's scores
        assert record["rows"] == 16 and record["task"] == "clone_bcb" and record["predict_seconds"] > 0
        assert Path(record["files"]["predictions"]).read_text() == _cell_predictions(cells[method])
        logged = _client().get_run(cell["mlflow_run_id"]).data.metrics
        assert logged["evaluate.f1"] == cell["metrics"]["f1"] and "evaluate.predict_seconds" in logged


def test_merge_reports_merged_scores_and_differences(cells, tmp_path, capsys):
    assert main(["--adapters", str(cells["lora"]), str(cells["ia3"]), "--merge", "--out", str(tmp_path)]) == 0
    records = _records(capsys)
    for record, method in zip(records, ("lora", "ia3")):
        merged, difference = record["merged"], record["merged_minus_unmerged"]
        assert record["metrics"] == _result(cells[method])["metrics"]
        for key, value in record["metrics"].items():
            assert merged["metrics"][key] == pytest.approx(value, abs=1e-9)  # merged = unmerged here
            assert difference["metrics"][key] == pytest.approx(merged["metrics"][key] - value)
        assert difference["predict_seconds"] == pytest.approx(merged["predict_seconds"] - record["predict_seconds"])
        assert merged["predict_seconds"] > 0 and record["quantized_base"] is False
        assert Path(merged["files"]["predictions"]).read_text() == _cell_predictions(cells[method])
        logged = _client().get_run(record["mlflow_run_id"]).data.metrics
        assert logged["evaluate.merged.f1"] == merged["metrics"]["f1"]
        assert logged["evaluate.merged_minus_unmerged.predict_seconds"] == pytest.approx(difference["predict_seconds"])


def test_mlflow_run_ids_are_enough(cells, tmp_path):
    """The command line, in a fresh process, given run ids only: the adapters come from the runs'
    artifacts (a cell logs adapter_model.safetensors beside its config)."""
    ids = [_result(cells[m])["mlflow_run_id"] for m in ("lora", "ia3")]
    env = {**subprocess_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "harness.evaluate", "--adapters", *ids,
                           "--tracking-uri", os.environ["MLFLOW_TRACKING_URI"]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["mlflow_run_id"] for r in records] == ids
    for record, method in zip(records, ("lora", "ia3")):
        assert record["metrics"] == _result(cells[method])["metrics"]
        assert Path(record["adapter"]).is_relative_to(tmp_path / "runs" / "evaluate")  # downloaded
    assert "base tiny_bert loaded once" in proc.stderr


def test_a_cell_on_another_base_is_refused_by_name(cells, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    narrow = run(compose([*SMOKE, "method=lora", "tracker=none", "model.build.config.hidden_size=32"]),
                 tmp_path / "narrow")
    assert narrow.status == "FINISHED", narrow.reason
    assert main(["--adapters", str(cells["lora"]), str(tmp_path / "narrow")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'narrow'} (clone_bcb/tiny_bert/lora/seed3) does not share the base of {cells['lora']}" in err
    assert "model.build.config.hidden_size: 32 here, 64 there" in err


@pytest.mark.parametrize("method, why", [("full", "fine-tunes every weight"),
                                         ("adapter", "attaches through harness.methods.adapter.attach")])
def test_a_cell_without_a_peft_adapter_is_refused(method, why, cells, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    other = run(compose([*SMOKE, f"method={method}", "tracker=none"]), tmp_path / method)
    assert other.status == "FINISHED", other.reason
    assert main(["--adapters", str(cells["lora"]), str(tmp_path / method)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / method} (clone_bcb/tiny_bert/{method}/seed3): method {method} {why}" in err


def test_a_run_dir_without_an_adapter_is_refused(cells, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(cells["lora"], bare, ignore=shutil.ignore_patterns("adapter"))
    assert main(["--adapters", str(cells["lora"]), str(bare)]) == 2
    assert f"{bare} (clone_bcb/tiny_bert/lora/seed3): no adapter, {bare}/adapter/adapter_config.json is missing" \
        in capsys.readouterr().err
    assert main(["--adapters", "0" * 32, "--tracking-uri", os.environ["MLFLOW_TRACKING_URI"]]) == 2
    assert f"{'0' * 32}: no such MLflow run in" in capsys.readouterr().err
    assert main(["--adapters", str(tmp_path / "nowhere")]) == 2
    assert "neither a cell's output directory nor an MLflow run id" in capsys.readouterr().err


def test_merging_into_a_4bit_base_leaves_it_bit_identical(tmp_path, monkeypatch, capsys):
    """QLoRA on the CPU (bitsandbytes' CPU backend): PEFT's unmerge requantizes, so the base comes
    back from harness.evaluate's copy; the next adapter then sees the base its cell trained on."""
    import peft
    import torch
    from hydra.utils import instantiate

    from harness.env import pick_device
    from harness.evaluate import merged_into_base
    from harness.models import load_base

    monkeypatch.chdir(tmp_path)
    cfg = compose([*SMOKE, "method=qlora", "tracker=none"])
    assert run(cfg, tmp_path / "qlora").status == "FINISHED"
    capsys.readouterr()  # the cell's own console lines
    assert main(["--adapters", str(tmp_path / "qlora"), str(tmp_path / "qlora"), "--merge"]) == 0
    records = _records(capsys)
    assert [r["metrics"] for r in records] == [_result(tmp_path / "qlora")["metrics"]] * 2
    assert all(r["quantized_base"] and r["merged"]["metrics"].keys() == r["metrics"].keys() for r in records)
    assert [r["logged_to"] for r in records] == [None, None]  # tracker=none: no run to log to
    task = instantiate(cfg.task, _convert_="all")
    base, _ = load_base(cfg.model, cfg.method, "sequence_classification", pick_device("cpu"), task.model_kwargs())
    model = peft.PeftModel.from_pretrained(instantiate(cfg.method.prepare)(base), str(tmp_path / "qlora" / "adapter"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(5, 100, (2, 24))
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with merged_into_base(model):
            merged = model(input_ids=ids).logits
        again = model(input_ids=ids).logits
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(again, unmerged)
    assert 0 < (merged - unmerged).abs().max() < 1e-2  # the 4-bit merge rounds, a little
