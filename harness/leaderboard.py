"""`python -m harness.leaderboard`: rows model x method, columns the tasks' primary metrics.

Built from MLflow runs (an experiment) or from result.json files (a directory). Each score is the
mean over seeds with a 95% CI (t-interval over seeds; with one seed, the run's bootstrap CI). The
best entry of each column is marked, and so is every entry a paired test on the shared test
examples cannot tell apart from it (p >= 0.05). Cost columns follow; every row links to its run.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.leaderboard_render import RENDERERS

ALPHA = 0.05


@dataclass
class Entry:
    """One (model, method) x task cell of the table, pooled over seeds."""
    records: list[dict]
    mean: float = 0.0
    low: float = 0.0
    high: float = 0.0
    best: bool = False
    tied_with_best: bool = False   # not significantly different from the best (paired test)
    p_value: float | None = None


@dataclass
class Board:
    tasks: list[str]
    rows: dict[tuple[str, str], dict[str, Entry]] = field(default_factory=dict)
    links: dict[tuple[str, str], str] = field(default_factory=dict)
    cost: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    metric_names: dict[str, str] = field(default_factory=dict)


def from_runs_dir(root: Path) -> list[dict]:
    records = []
    for path in sorted(Path(root).rglob("result.json")):
        record = json.loads(path.read_text())
        record["_dir"] = str(path.parent)
        records.append(record)
    return records


def from_mlflow(uri: str, experiment: str, cache: Path) -> list[dict]:
    """result.json and prediction files of every FINISHED cell run, fetched from MLflow."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"leaderboard: experiment {experiment!r} not found at {uri}")
    runs = client.search_runs([found.experiment_id], "tags.`harness.status` = 'FINISHED'", max_results=5000)
    records = []
    for run in runs:
        if "config_hash" not in run.data.tags or run.data.tags.get("config_hash") == "sweep":
            continue
        local = Path(download_artifacts(run_id=run.info.run_id, dst_path=str(cache / run.info.run_id),
                                        tracking_uri=uri))
        record = json.loads((local / "result.json").read_text())
        record["_dir"] = str(local)
        record["_link"] = f"#/experiments/{found.experiment_id}/runs/{run.info.run_id}"
        records.append(record)
    return records


def _interval(values: list[float], one_seed_ci: list[float] | None) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    if len(values) == 1:
        low, high = one_seed_ci or (mean, mean)
        return mean, low, high
    from scipy.stats import t

    half = t.ppf(1 - ALPHA / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _predictions(record: dict) -> tuple[list, list] | None:
    """(references, predictions) of a run, read back from its official-format files."""
    files = record.get("files") or {}
    base = Path(record["_dir"])
    gold, pred = (base / "predictions" / Path(files.get(k, "")).name for k in ("gold", "predictions"))
    if not (files and gold.is_file() and pred.is_file()):
        return None
    return _load(record["metric"], str(gold), str(pred))


@functools.lru_cache(maxsize=64)
def _load(metric: str, gold: str, pred: str) -> tuple[list, list]:
    """Parsed once per file pair: the best entry of a column is compared with every other row."""
    from metrics.__main__ import load

    return load(metric, gold, pred)


def _mark_ties(column: dict[tuple[str, str], Entry]) -> None:
    """Paired test of each entry against the best on the shared test examples (first common seed)."""
    from metrics.bootstrap import paired_test

    top = max(e.mean for e in column.values())
    for entry in column.values():
        entry.best = entry.mean == top  # exact ties share the mark
    best = column[min(k for k, e in column.items() if e.best)]
    for key, entry in column.items():
        if entry.best:
            continue
        seeds = {r["seed"]: r for r in entry.records}
        common = [r for r in best.records if r["seed"] in seeds and r["data_digest"] == seeds[r["seed"]]["data_digest"]]
        if not common:
            continue
        a, b = _predictions(common[0]), _predictions(seeds[common[0]["seed"]])
        if a is None or b is None or a[0] != b[0]:
            continue
        test = paired_test(common[0]["metric"], a[0], a[1], b[1], key=common[0]["primary_metric"])
        entry.p_value = test["p_value"]
        entry.tied_with_best = test["p_value"] >= ALPHA


def build(records: list[dict], ui_url: str | None = None) -> Board:
    finished = [r for r in records if r.get("status") == "FINISHED"]
    if not finished:
        raise SystemExit("leaderboard: no FINISHED runs found")
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in finished:
        grouped[(r["model"], r["method"])][r["task"]].append(r)
    board = Board(tasks=sorted({r["task"] for r in finished}))
    for row, by_task in grouped.items():
        board.rows[row] = {}
        for task, recs in by_task.items():
            mean, low, high = _interval([r["primary_value"] for r in recs],
                                        recs[0]["confidence_intervals"].get(recs[0]["primary_metric"]))
            board.rows[row][task] = Entry(recs, mean, low, high)
            board.metric_names[task] = recs[0]["primary_metric"]
        every = [r for recs in by_task.values() for r in recs]
        board.cost[row] = {k: statistics.fmean(r["cost"][k] for r in every)
                           for k in ("trainable_share", "trainable_params", "peak_memory_bytes", "train_seconds")}
        link = every[0].get("_link") or (every[0].get("mlflow_run_id") and f"run {every[0]['mlflow_run_id']}")
        board.links[row] = f"{ui_url.rstrip('/')}/{link}" if ui_url and link and link.startswith("#") else (link or "")
    for task in board.tasks:
        _mark_ties({row: cells[task] for row, cells in board.rows.items() if task in cells})
    return board


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="codexglue")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db")
    parser.add_argument("--runs-dir", type=Path, help="build from result.json files under DIR instead of MLflow")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="md")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    parser.add_argument("--ui-url", default="http://127.0.0.1:5000", help="base URL of the MLflow UI for row links")
    parser.add_argument("--log-to-run", help="also log the leaderboard as an artifact of this MLflow run (a sweep's parent)")
    args = parser.parse_args(argv)
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.tracking import absolute_uri

    uri = absolute_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db"))
    with tempfile.TemporaryDirectory() as cache:
        records = from_runs_dir(args.runs_dir) if args.runs_dir else from_mlflow(uri, args.experiment, Path(cache))
        text = RENDERERS[args.format](build(records, args.ui_url))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        if args.log_to_run:
            from mlflow import MlflowClient

            MlflowClient(uri).log_artifact(args.log_to_run, str(args.out), "leaderboard")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
