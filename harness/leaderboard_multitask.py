"""Multi-task cells (tasks/multitask.py) on the leaderboard: one entry in each member task's column.

A multi-task result.json scores one adapter on several tasks (`per_task`); the board has no column
for the composite itself (its mean of primary metrics on different scales compares with nothing).
Each member gets a record of its own, as a single-task cell of that task would be, under the method
label `<method> (<multitask cell name>: <task>+<task>)`, so the shared adapter sits beside the
single-task adapters in every member's column, with its own prediction files for the paired tests.
"""
from __future__ import annotations

from pathlib import Path


def label(record: dict) -> str:
    return f"{record['method']} ({record['task']}: {'+'.join(record['per_task'])})"


def member_record(record: dict, task: str) -> dict:
    """The multi-task record as seen from one member task's column."""
    from harness.tokenizer import task_yaml

    own = task_yaml(task)
    prefix = f"{task}."
    files = {k.split("/", 1)[1]: v for k, v in (record.get("files") or {}).items() if k.startswith(f"{task}/")}
    scores = record["per_task"][task]
    return {**record, "task": task, "method": label(record), "metric": own["metric"],
            "primary_metric": own["primary_metric"], "primary_value": scores[own["primary_metric"]],
            "metrics": scores, "files": files, "naive_metrics": {}, "_cache": None,
            "confidence_intervals": {k[len(prefix):]: v for k, v in (record.get("confidence_intervals") or {}).items()
                                     if k.startswith(prefix)},
            "_predictions": str(Path(record.get("_dir", ".")) / "predictions" / task)}


def expand(records: list[dict]) -> list[dict]:
    """Every record, with each multi-task one replaced by one record per member task."""
    return [m for r in records for m in ([member_record(r, t) for t in r["per_task"]] if r.get("per_task") else [r])]
