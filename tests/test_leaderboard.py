"""Leaderboard: seeds pooled, best marked, statistical ties marked, every format, from MLflow too."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import harness_cmd, subprocess_env
from harness.leaderboard import build, from_runs_dir, main

N = 200


def _cell(root, method, seed, predictions, gold, share):
    """A result.json with official-format Devign prediction files, as a real run writes them."""
    out = root / f"{method}_{seed}"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "answers.jsonl").write_text(
        "".join(json.dumps({"idx": i, "target": g}) + "\n" for i, g in enumerate(gold)))
    (out / "predictions" / "predictions.txt").write_text("".join(f"{i}\t{p}\n" for i, p in enumerate(predictions)))
    accuracy = sum(p == g for p, g in zip(predictions, gold)) / len(gold)
    record = {"status": "FINISHED", "task": "defect", "model": "m", "method": method, "seed": seed,
              "metric": "defect_detection", "primary_metric": "accuracy", "primary_value": accuracy,
              "metrics": {"accuracy": accuracy}, "confidence_intervals": {"accuracy": [accuracy - .05, accuracy + .05]},
              "data_digest": "d", "mlflow_run_id": f"id-{method}-{seed}",
              "files": {"gold": "answers.jsonl", "predictions": "predictions.txt"},
              "cost": {"trainable_share": share, "trainable_params": share * 1e6, "peak_memory_bytes": 2**30,
                       "train_seconds": 10.0}}
    (out / "result.json").write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    gold = [i % 2 for i in range(N)]
    for seed in (0, 1):
        _cell(tmp_path, "full", seed, gold, gold, 1.0)                                     # perfect
        _cell(tmp_path, "lora", seed, [1 - g if i < 3 + seed else g for i, g in enumerate(gold)], gold, .01)
        _cell(tmp_path, "ia3", seed, [1 - g if i < 60 else g for i, g in enumerate(gold)], gold, .001)
    return tmp_path


def test_best_and_ties_are_marked_by_a_paired_test(runs):
    board = build(from_runs_dir(runs))
    col = {row[1]: cells["defect"] for row, cells in board.rows.items()}
    assert col["full"].best and col["full"].mean == 1.0
    assert not col["lora"].best and col["lora"].tied_with_best      # 3-4 flips of 200: p >= 0.05
    assert not col["ia3"].tied_with_best and col["ia3"].p_value < 0.001
    assert col["lora"].mean == pytest.approx((197 / 200 + 196 / 200) / 2)
    assert col["lora"].low < col["lora"].mean < col["lora"].high  # t-interval over the two seeds


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "html", "latex"])
def test_every_format_renders(runs, tmp_path, fmt):
    out = tmp_path / f"board.{fmt}"
    assert main(["--runs-dir", str(runs), "--format", fmt, "--out", str(out)]) == 0
    text = out.read_text()
    assert "lora" in text and "ia3" in text
    if fmt == "md":
        assert "**1.0000" in text and "≈" in text
    if fmt == "json":
        rows = {r["method"]: r for r in json.loads(text)["rows"]}
        assert rows["full"]["defect"]["best"] and rows["lora"]["defect"]["not_significantly_worse"]
    if fmt == "html":
        assert text.count("<svg") == 1 and "Pareto front" in text and "<script src" not in text


@pytest.mark.slow
def test_leaderboard_from_mlflow_and_logged_to_the_sweep(in_tmp):
    proc = subprocess.run(harness_cmd("-m", "model=tiny_bert", "trainer=smoke", "method=lora,full"),
                          cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = next(in_tmp.glob("runs/multirun/*"))
    assert (sweep / "leaderboard.html").exists() and (sweep / "leaderboard.md").exists()
    out = in_tmp / "board.md"
    assert main(["--tracking-uri", f"sqlite:///{in_tmp}/runs/mlflow.db", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| tiny_bert | lora |" in text and "| tiny_bert | full |" in text
    assert "#/experiments/" in text  # rows link to their MLflow runs

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{in_tmp}/runs/mlflow.db")
    parent = (sweep / "parent_run_id").read_text()
    assert {a.path for a in client.list_artifacts(parent, "leaderboard")} >= {
        "leaderboard/leaderboard.html", "leaderboard/leaderboard.md"}
