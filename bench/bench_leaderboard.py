"""A leaderboard over 2,000 MLflow runs: built once fetching every run's files, then from the cache.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_leaderboard.py [--out runs/bench/leaderboard] [--runs 2000]

Builds (once) a sqlite MLflow store with `--runs` FINISHED cell runs: 4 tasks (2 classification,
scored by accuracy; 2 generation, scored by corpus BLEU) x 50 model/method rows x 10 seeds, each run
with its result.json and official prediction files (500 test examples; the generation references are
real code_to_code_trans C# lines, the predictions edits of them). Then times `python -m
harness.leaderboard` end to end twice in fresh processes: with an empty artifact cache, and again
with the cache filled. Prints both wall times and the board's size.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"defect": ("defect_detection", "accuracy"), "search_webquery": ("nl_code_search_webquery", "accuracy"),
         "translation_java_cs": ("code_to_code_trans", "bleu"), "refinement_small": ("code_refinement", "bleu")}
N = 500


def _files(task: str, rng: random.Random, refs: list[str], skill: float, folder: Path) -> float:
    """Write one run's official files; return its primary score."""
    from metrics import compute
    from metrics.registry import spec

    metric, key = TASKS[task]
    folder.mkdir(parents=True, exist_ok=True)
    if key == "accuracy":
        gold = [i % 2 for i in range(N)]
        preds = [g if rng.random() < skill else 1 - g for g in gold]
        keys = list(range(N))
    else:
        gold = refs
        preds = [r if rng.random() < skill else " ".join(r.split()[: max(1, len(r.split()) // 2)]) for r in refs]
        keys = list(range(N))
    pred_ext = "txt"
    spec(metric).write(folder / f"answers.{spec(metric).gold_ext}", folder / f"predictions.{pred_ext}", keys, gold, preds)
    return compute(metric, gold, preds)[key]


def build_store(out: Path, runs: int) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{out / 'mlflow.db'}"
    if (out / "mlflow.db").exists():
        return uri
    out.mkdir(parents=True, exist_ok=True)
    refs = [json.loads(x)["cs"].strip() for x in (ROOT / "tasks/data/code_to_code_trans/test.jsonl").open()][:N]
    client = MlflowClient(uri)
    exp = client.create_experiment("codexglue", artifact_location=(out / "artifacts").resolve().as_uri())
    rng = random.Random(0)
    rows = max(1, runs // (len(TASKS) * 10))
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            for row in range(rows):
                for seed in range(10):
                    run = client.create_run(exp, tags={"config_hash": f"{task}-{row}-{seed}", "harness.status": "FINISHED"})
                    folder = Path(tmp) / run.info.run_id
                    score = _files(task, rng, refs, 0.6 + 0.3 * row / rows, folder / "predictions")
                    metric, key = TASKS[task]
                    record = {"status": "FINISHED", "task": task, "model": "m", "method": f"method{row:02d}",
                              "seed": seed, "metric": metric, "primary_metric": key, "primary_value": score,
                              "metrics": {key: score}, "confidence_intervals": {}, "data_digest": task,
                              "data": {"comparable": True}, "mlflow_run_id": run.info.run_id,
                              "files": {"gold": f"answers.{'jsonl' if metric == 'defect_detection' else 'txt'}",
                                        "predictions": "predictions.txt"},
                              "cost": {"trainable_share": 0.01, "trainable_params": 1e6, "peak_memory_bytes": 2**30,
                                       "train_seconds": 60.0}}
                    (folder / "result.json").write_text(json.dumps(record))
                    client.log_artifact(run.info.run_id, str(folder / "result.json"))
                    client.log_artifacts(run.info.run_id, str(folder / "predictions"), "predictions")
                    client.set_terminated(run.info.run_id)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/bench/leaderboard")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    started = time.perf_counter()
    uri = build_store(out, args.runs)
    print(f"store ready in {time.perf_counter() - started:.0f} s: {uri}", flush=True)
    cache = out / "cache"
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    for label in ("first (fetching every run's files)", "second (cached)"):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness.leaderboard", "--tracking-uri", uri, "--cache-dir",
                               str(cache), "--format", "json", "--out", str(out / "board.json")], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        board = json.loads((out / "board.json").read_text())
        entries = sum(1 for r in board["rows"] for t in board["tasks"] if t in r)
        print(json.dumps({"run": label, "seconds": round(time.perf_counter() - t, 1), "runs": args.runs,
                          "entries": entries, "tasks": len(board["tasks"])}), flush=True)


if __name__ == "__main__":
    main()
