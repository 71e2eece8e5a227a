"""`python -m harness.leaderboard`: rows model x method, columns the tasks' primary metrics.

Built from MLflow runs (an experiment, paged through without a cap, each run's result.json and
prediction files fetched once into a cache keyed by run id) or from result.json files (a
directory). Per task: the mean over seeds with an interval that respects the metric's range, the
best entry marked, every other entry tested against it over their shared seeds with Holm's
correction (harness/leaderboard_stats.py), the entry's own cost on that task, whether its data are
the official splits (`data.comparable`), degenerate entries flagged, and reference rows: the
published CodeXGLUE baselines of the task YAML and the naive baseline the cells computed.
`--diff RUN_A RUN_B` prints the test examples one run gets right and the other wrong.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.leaderboard_render import RENDERERS
from harness.leaderboard_stats import Entry, compare_with_best, degenerate, set_interval

COST_KEYS = ("trainable_share", "trainable_params", "peak_memory_bytes", "train_seconds")
FORGETTING = "retention.delta_loss"  # mean over the seeds that measured it (trainer.retention)


@dataclass
class Board:
    tasks: list[str]
    rows: dict[tuple[str, str], dict[str, Entry]] = field(default_factory=dict)
    metric_names: dict[str, str] = field(default_factory=dict)
    references: dict[str, list[dict]] = field(default_factory=dict)  # task -> published and naive rows


def from_runs_dir(root: Path) -> list[dict]:
    records = []
    for path in sorted(Path(root).rglob("result.json")):
        record = json.loads(path.read_text())
        record["_dir"] = str(path.parent)
        records.append(record)
    return records


def _runs(client, experiment_id: str):
    """Every FINISHED cell run of the experiment, page by page (no cap)."""
    token = None
    while True:
        page = client.search_runs([experiment_id], "tags.`harness.status` = 'FINISHED'", max_results=1000,
                                  page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def from_mlflow(uri: str, experiment: str, cache: Path) -> list[dict]:
    """result.json and prediction files of every FINISHED cell run (fetch_run)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"leaderboard: experiment {experiment!r} not found at {uri}")
    records = []
    for run in _runs(client, found.experiment_id):
        if "config_hash" not in run.data.tags or run.data.tags.get("config_hash") == "sweep":
            continue
        record = fetch_run(run.info.run_id, cache, uri)
        if record is None:
            print(f"leaderboard: run {run.info.run_id} is FINISHED but has no result.json; left out", file=sys.stderr)
            continue
        record["_link"] = f"#/experiments/{found.experiment_id}/runs/{run.info.run_id}"
        records.append(record)
    return records


def fetch_run(run_id: str, cache: Path, uri: str) -> dict | None:
    """A run's result.json and prediction files, fetched once into cache/<run id>/ (a run's
    artifacts do not change once it has FINISHED); None if the run has no result.json."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    local, done = cache / run_id, cache / run_id / ".complete"
    if not done.exists():
        listed = {f.path for f in MlflowClient(uri).list_artifacts(run_id)}
        if "result.json" not in listed:
            return None
        for path in ("result.json", "predictions"):  # without predictions: comparisons say so
            if path in listed:
                download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(local), tracking_uri=uri)
        done.touch()
    record = json.loads((local / "result.json").read_text())
    record["_dir"] = record["_cache"] = str(local)
    return record


def _entry(records: list[dict], ui_url: str | None = None) -> Entry:
    from metrics.registry import bounds

    first = min(records, key=lambda r: r["seed"])
    link = first.get("_link") or (first.get("mlflow_run_id") and f"run {first['mlflow_run_id']}") or ""
    entry = Entry(records, link=f"{ui_url.rstrip('/')}/{link}" if ui_url and link.startswith("#") else link)
    set_interval(entry, records[0]["primary_metric"], bounds(records[0]["metric"], records[0]["primary_metric"]))
    entry.cost = {k: sum(r["cost"].get(k) or 0 for r in records) / len(records) for k in COST_KEYS}
    forgetting = [r["metrics"][FORGETTING] for r in records if FORGETTING in (r.get("metrics") or {})]
    entry.cost[FORGETTING] = sum(forgetting) / len(forgetting) if forgetting else None  # harness/retention.py
    entry.comparable = all((r.get("data") or {}).get("comparable") for r in records)
    return entry


def references(task: str, records: list[dict]) -> list[dict]:
    """The task's published baselines (its YAML) and the naive baseline its cells computed."""
    from harness.tokenizer import TASK_CONF, task_yaml

    key = records[0]["primary_metric"]
    published = task_yaml(task).get("baselines") or [] if (TASK_CONF / f"{task}.yaml").exists() else []
    rows = [{"kind": "published", "name": b["model"], "value": b["scores"][key], "source": b.get("source", "")}
            for b in published if key in b.get("scores", {})]
    naive = next((r for r in records if (r.get("naive_metrics") or {}).get(key) is not None), None)
    if naive is not None:
        rows.append({"kind": "naive", "name": naive.get("naive", "naive"), "value": naive["naive_metrics"][key],
                     "source": "computed by the cells on the same test split"})
    return rows


def current_searches(records: list[dict]) -> list[dict]:
    """A search's final cells as of its latest summary (the most trials, harness/search.py): when a
    larger n_trials found other best params, the earlier finals are left out, not averaged in."""
    latest: dict[str, dict] = {}
    for r in records:
        block = r.get("search") or {}
        if block.get("role") == "final" and block["trials"] >= latest.get(block["study"], {}).get("trials", -1):
            latest[block["study"]] = block
    out = []
    for r in records:
        block = r.get("search") or {}
        now = latest.get(block.get("study")) if block.get("role") == "final" else None
        if now is not None and block["best_params"] != now["best_params"]:
            print(f"leaderboard: {r.get('mlflow_run_id') or r.get('_dir')} left out: a final cell of search "
                  f"{block['study']} after {block['trials']} trials; its best params changed at {now['trials']}",
                  file=sys.stderr)
            continue
        out.append(r if now is None else {**r, "search": now})
    return out


def build(records: list[dict], ui_url: str | None = None) -> Board:
    from harness.leaderboard_multitask import expand

    records = current_searches(records)
    finished = expand([r for r in records if r.get("status") == "FINISHED"  # a multi-task cell: one entry per member
                       and (r.get("data") or {}).get("score_split", "test") == "test"])  # a search's trials: validation
    if not finished:
        raise SystemExit("leaderboard: no FINISHED runs found")
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in finished:
        grouped[(r["model"], r["method"])][r["task"]].append(r)
    board = Board(tasks=sorted({r["task"] for r in finished}))
    for row, by_task in grouped.items():
        board.rows[row] = {task: _entry(recs, ui_url) for task, recs in by_task.items()}
    for task in board.tasks:
        column = {row: cells[task] for row, cells in board.rows.items() if task in cells}
        records_of_task = [r for e in column.values() for r in e.records]
        board.metric_names[task] = records_of_task[0]["primary_metric"]
        compare_with_best(column, board.metric_names[task])
        board.references[task] = references(task, records_of_task)
        naive = next((x for x in board.references[task] if x["kind"] == "naive"), None)
        for entry in column.values():
            entry.degenerate = degenerate(entry, naive and naive["value"], naive and naive["name"])
    return board


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="codexglue")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db")
    parser.add_argument("--runs-dir", type=Path, help="build from result.json files under DIR instead of MLflow")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache/leaderboard"),
                        help="where each MLflow run's files are kept once fetched")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="md")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    parser.add_argument("--ui-url", default="http://127.0.0.1:5000", help="base URL of the MLflow UI for row links")
    parser.add_argument("--log-to-run", help="also log the leaderboard as an artifact of this MLflow run (a sweep's parent)")
    parser.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"),
                        help="print the test examples one run gets right and the other wrong (MLflow run ids "
                             "or run directories)")
    parser.add_argument("--limit", type=int, default=20, help="examples shown by --diff")
    parser.add_argument("--clean-only", action="store_true", help="rescore every entry on the test rows without a "
                        "near-duplicate (the report of python -m harness.contamination; harness/leaderboard_clean.py)")
    parser.add_argument("--contamination-dir", type=Path, default=Path("runs/contamination"),
                        help="where --clean-only finds the contamination reports")
    args = parser.parse_args(argv)
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.tracking import absolute_uri

    uri = absolute_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db"))
    if args.diff:
        from harness.leaderboard_diff import diff

        sys.stdout.write(diff(*args.diff, uri, args.cache_dir, args.limit))
        return 0
    records = from_runs_dir(args.runs_dir) if args.runs_dir else from_mlflow(uri, args.experiment, args.cache_dir)
    if args.clean_only:
        from harness.leaderboard_clean import clean

        records = clean(records, args.contamination_dir)
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
