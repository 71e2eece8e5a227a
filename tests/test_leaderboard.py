"""Leaderboard statistics a reviewer accepts, on a grid whose right answer is known: one method
clearly better, two indistinguishable, one untestable, one degenerate; intervals inside the
metric's range; Holm's correction; each entry's own cost per task; reference rows; every format;
from MLflow too, paged and cached; `--diff`."""
from __future__ import annotations

import json
import random
import subprocess

import pytest

from conftest import harness_cmd, subprocess_env
from harness.leaderboard import build, from_runs_dir, main
from harness.leaderboard_stats import holm

N = 400


def _cell(root, method, seed, predictions, gold, share, task="defect", digest="d", naive=None):
    """A result.json with official-format Devign prediction files, as a real run writes them."""
    out = root / f"{task}_{method}_{seed}"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "answers.jsonl").write_text(
        "".join(json.dumps({"idx": i, "target": g}) + "\n" for i, g in enumerate(gold)))
    (out / "predictions" / "predictions.txt").write_text("".join(f"{i}\t{p}\n" for i, p in enumerate(predictions)))
    accuracy = sum(p == g for p, g in zip(predictions, gold)) / len(gold)
    ones = sum(predictions)
    record = {"status": "FINISHED", "task": task, "model": "m", "method": method, "seed": seed,
              "metric": "defect_detection", "primary_metric": "accuracy", "primary_value": accuracy,
              "metrics": {"accuracy": accuracy}, "confidence_intervals": {"accuracy": [accuracy - .05, accuracy + .05]},
              "data_digest": digest, "mlflow_run_id": f"id-{task}-{method}-{seed}",
              "data": {"comparable": task == "defect", "why_not_comparable": None if task == "defect" else "derived"},
              "files": {"gold": "answers.jsonl", "predictions": "predictions.txt"},
              "prediction_distribution": {"False": len(predictions) - ones, "True": ones},
              "naive": "majority", "naive_metrics": {"accuracy": naive if naive is not None else 0.5},
              "cost": {"trainable_share": share, "trainable_params": share * 1e6, "peak_memory_bytes": 2**30 * share,
                       "train_seconds": 10.0 * share}}
    (out / "result.json").write_text(json.dumps(record))


def _flip(gold, wrong: set) -> list[int]:
    return [1 - g if i in wrong else g for i, g in enumerate(gold)]


@pytest.fixture
def runs(tmp_path):
    rng = random.Random(0)
    gold = [rng.randint(0, 1) for _ in range(N)]
    for seed in (0, 1, 2):
        base = set(rng.sample(range(N), 40))                                   # the best: 90% right
        right = sorted(set(range(N)) - base)
        _cell(tmp_path, "full", seed, _flip(gold, base), gold, 1.0)
        swapped = (base - set(sorted(base)[:2])) | set(right[:3])              # 2 fixed, 3 broken: a tie
        _cell(tmp_path, "lora", seed, _flip(gold, swapped), gold, .01)
        _cell(tmp_path, "ia3", seed, _flip(gold, set(rng.sample(range(N), 120))), gold, .001)  # 70%: worse
        _cell(tmp_path, "prompt", seed, _flip(gold, base | {right[0]}), gold, .002, digest="other")  # other data
        _cell(tmp_path, "vera", seed, [0] * N, gold, .003)                       # one class: degenerate
        _cell(tmp_path, "full", seed, _flip(gold, base), gold, 0.5, task="clone_bcb_like")  # other cost elsewhere
    return tmp_path


def test_a_grid_with_a_known_answer(runs):
    board = build(from_runs_dir(runs))
    col = {row[1]: cells["defect"] for row, cells in board.rows.items() if "defect" in cells}
    assert col["full"].best and col["full"].seeds == 3
    assert col["lora"].tied_with_best and col["lora"].p_adjusted >= 0.05 and col["lora"].untestable_reason is None
    assert not col["ia3"].tied_with_best and col["ia3"].p_adjusted < 0.001
    assert col["prompt"].untestable_reason == "n/a: different test data" and col["prompt"].p_value is None
    assert col["vera"].degenerate.startswith("degenerate: 100% of predictions are 'False'")
    assert col["full"].degenerate is None and col["lora"].degenerate is None
    for e in col.values():
        assert 0 <= e.low <= e.mean <= e.high <= 1


def test_holm_adjusts_across_the_comparisons_of_a_task():
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": 0.03, "c": 0.06, "b": 0.06}


def test_intervals_stay_in_the_metrics_range_with_two_seeds(tmp_path):
    gold = [i % 2 for i in range(60)]
    for seed, wrong in ((0, set(range(0, 58))), (1, set(range(2, 30)))):   # 0.03 and 0.53: far apart
        _cell(tmp_path, "lora", seed, _flip(gold, wrong), gold, .01)
    entry = build(from_runs_dir(tmp_path)).rows[("m", "lora")]["defect"]
    assert 0 <= entry.low <= entry.mean <= entry.high <= 1 and entry.seeds == 2
    assert "bootstrap over test examples" in entry.interval


def test_each_entry_carries_its_own_cost_on_each_task(runs):
    board = build(from_runs_dir(runs))
    row = board.rows[("m", "full")]
    assert row["defect"].cost["trainable_share"] == 1.0 and row["clone_bcb_like"].cost["trainable_share"] == 0.5


def test_reference_rows_and_comparability(runs):
    board = build(from_runs_dir(runs))
    kinds = {r["kind"] for r in board.references["defect"]}
    assert "naive" in kinds and "published" in kinds   # defect.yaml's baselines and the cells' majority class
    assert board.rows[("m", "full")]["defect"].comparable and not board.rows[("m", "full")]["clone_bcb_like"].comparable


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "html", "latex"])
def test_every_format_says_every_mark(runs, tmp_path, fmt):
    out = tmp_path / f"board.{fmt}"
    assert main(["--runs-dir", str(runs), "--format", fmt, "--out", str(out)]) == 0
    text = out.read_text()
    assert "n/a: different test data" in text and "degenerate" in text
    if fmt in ("md", "html", "latex"):
        assert "naive" in text and "published" in text
    if fmt == "json":
        rows = {r["method"]: r for r in json.loads(text)["rows"]}
        lora = rows["lora"]["defect"]
        for key in ("mean", "ci_low", "ci_high", "seeds", "p_value", "p_adjusted", "tied_with_best",
                    "untestable_reason", "cost"):
            assert key in lora, key
        assert lora["tied_with_best"] and lora["untestable_reason"] is None and lora["seeds"] == 3
        assert rows["prompt"]["defect"]["untestable_reason"] == "n/a: different test data"
    if fmt == "html":
        assert text.count("<svg") == 1 and "Pareto front" in text and "<script src" not in text


def test_diff_prints_what_one_run_gets_right_and_the_other_wrong(runs, capsys):
    assert main(["--diff", str(runs / "defect_full_0"), str(runs / "defect_ia3_0"), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{N} test examples, per-example correct: A better on" in out
    assert "A right / better, B not (first 3 of" in out and "gold:" in out


@pytest.mark.slow
def test_leaderboard_from_mlflow_and_logged_to_the_sweep(in_tmp):
    proc = subprocess.run(harness_cmd("-m", "model=tiny_bert", "trainer=smoke", "method=lora,full"),
                          cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = next(in_tmp.glob("runs/multirun/*"))
    assert (sweep / "leaderboard.html").exists() and (sweep / "leaderboard.md").exists()
    out, cache = in_tmp / "board.md", in_tmp / "cache"
    uri = f"sqlite:///{in_tmp}/runs/mlflow.db"
    assert main(["--tracking-uri", uri, "--out", str(out), "--cache-dir", str(cache)]) == 0
    text = out.read_text()
    assert "| tiny_bert | lora |" in text and "| tiny_bert | full |" in text
    assert "#/experiments/" in text  # rows link to their MLflow runs
    assert len(list(cache.glob("*/.complete"))) == 2   # each run's files fetched once, kept by run id

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = (sweep / "parent_run_id").read_text()
    assert {a.path for a in client.list_artifacts(parent, "leaderboard")} >= {
        "leaderboard/leaderboard.html", "leaderboard/leaderboard.md"}
    run_id = next(p.name for p in cache.iterdir())
    assert "per_example.json" in {a.path for a in client.list_artifacts(run_id)}
