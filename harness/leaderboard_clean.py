"""`python -m harness.leaderboard --clean-only`: every entry rescored on the clean test rows.

A run's test rows are matched to the contamination report of its task and data digest
(`<contamination dir>/<task>-<data_digest>.json`, written by `python -m harness.contamination`);
its predictions, read back from its official files (harness.leaderboard_stats.predictions_of), are
scored by the same metric code as the cell (metrics.compute, the task's metric_kwargs) without the
rows the report names. A run's predictions cover the first N test rows (trainer.max_eval_examples),
so row k of its files is test row k. Intervals: the bootstrap over the clean rows. A task without a
report, or a run without prediction files, is an error, never the full test set.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from harness.contamination import report_path
from harness.leaderboard_stats import RESAMPLES, predictions_of


def load_report(reports: Path, task: str, digest: str | None) -> dict:
    path = report_path(reports, task, str(digest))
    if not path.is_file():
        raise SystemExit(f"leaderboard --clean-only: no contamination report for task {task} (data digest {digest}) "
                         f"at {path}; run `python -m harness.contamination task={task}` with the task.data_dir= of "
                         f"its runs (and contamination.out_dir={reports} if not the default)")
    report = json.loads(path.read_text())
    report["_path"] = str(path)
    return report


def rescore(record: dict, report: dict) -> dict:
    """A copy of the run's record with metrics, primary value and intervals of its clean rows."""
    import metrics

    found = predictions_of(record)
    where = f"leaderboard --clean-only: run {record.get('mlflow_run_id') or record.get('_dir')} (task {record['task']})"
    if found is None:
        raise SystemExit(f"{where} has no prediction files to rescore; its official gold and prediction files are needed")
    refs, preds = found
    if len(refs) > report["test_rows"]:
        raise SystemExit(f"{where}: {len(refs)} predictions but the report {report['_path']} counts "
                         f"{report['test_rows']} test rows; not the same test split")
    dirty = set(report["contaminated_test_rows"])
    keep = [k for k in range(len(refs)) if k not in dirty]
    if not keep:
        raise SystemExit(f"{where}: every one of its {len(refs)} test rows is contaminated; nothing left to score")
    refs, preds = [refs[k] for k in keep], [preds[k] for k in keep]
    kwargs = report.get("metric_kwargs") or {}
    scores = metrics.compute(record["metric"], refs, preds, **kwargs)
    if report.get("syntax_language") and "syntax_valid_rate" in (record.get("metrics") or {}):
        from metrics.syntax_validity import KEY, valid_rate

        scores[KEY] = valid_rate(preds, report["syntax_language"])
    clean = {k: v for k, v in record.items() if k != "naive_metrics"}  # the naive baseline saw the full test set
    clean["_keep_rows"] = keep  # paired tests and per-example statistics on the clean rows (leaderboard_stats)
    kept = {k: v for k, v in (record.get("metrics") or {}).items() if k.startswith("retention.")}  # not test rows
    clean["metrics"], clean["primary_value"] = {**kept, **scores}, scores[record["primary_metric"]]
    clean["confidence_intervals"] = _intervals(record, refs, preds, kwargs)
    clean["clean_only"] = {"report": report["_path"], "rows": len(keep), "left_out": len(found[0]) - len(keep)}
    return clean


def _intervals(record: dict, refs: list, preds: list, kwargs: dict) -> dict[str, list[float]]:
    from metrics.bootstrap import confidence_interval

    found = confidence_interval(record["metric"], refs, preds, n_resamples=RESAMPLES, seed=int(record.get("seed", 0)),
                                **kwargs)
    return {k: [float(lo), float(hi)] for k, (lo, hi) in found.items() if np.isfinite([lo, hi]).all()}


def clean(records: list[dict], reports: Path) -> list[dict]:
    """The FINISHED records rescored on their clean test rows (the others as they are)."""
    out, seen = [], {}
    for record in records:
        if record.get("status") != "FINISHED":
            out.append(record)
            continue
        if record.get("per_task"):  # its members' rows are not matched to the members' reports: said, not scored
            print(f"leaderboard --clean-only: multi-task run {record.get('mlflow_run_id') or record.get('_dir')} "
                  f"left out (its members' test rows are not matched to contamination reports)", file=sys.stderr)
            continue
        key = (record["task"], record.get("data_digest"))
        if key not in seen:
            seen[key] = load_report(reports, *key)
            r = seen[key]
            print(f"leaderboard --clean-only: task {key[0]}: {r['contaminated_test_rows_count']} of {r['test_rows']} "
                  f"test rows left out (Jaccard >= {r['threshold']}, {r['_path']})", file=sys.stderr)
        out.append(rescore(record, seen[key]))
    return out
