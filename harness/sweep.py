"""Hydra callback for multiruns: one parent MLflow run per sweep, a comparison at the end.

The parent run id is written to `<sweep dir>/parent_run_id`, so cells in other processes (joblib,
submitit and SLURM launchers) find it. A sweep launched again in the same directory continues that
parent run, so the cells it resumes or skips stay under it. The sweep exits non-zero when any cell
FAILED.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

from harness import distributed, outbox, provenance
from harness.leaderboard import from_runs_dir
from harness.report import comparison

PARENT_FILE = "parent_run_id"


def parent_run_id(sweep_dir: str | Path) -> str | None:
    path = Path(sweep_dir) / PARENT_FILE
    return path.read_text().strip() if path.exists() else None


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.tracker = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not distributed.is_main():  # a sweep of multi-process cells: the main process records it
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.tracker = outbox.journaled(instantiate(config.tracker), sweep_dir, scope="sweep")  # harness.sync
        overrides = " ".join(config.hydra.overrides.task)
        self.tracker.start(f"sweep {sweep_dir.name}", {**provenance.tags("sweep"), "sweep_dir": str(sweep_dir),
                                                       "sweep_overrides": overrides},
                           resume_run_id=_earlier_parent(self.tracker, sweep_dir))
        if self.tracker.run_id:
            (sweep_dir / PARENT_FILE).write_text(self.tracker.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not distributed.is_main():
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        results = from_runs_dir(sweep_dir)
        table = comparison(results)
        counts = Counter(r["status"] for r in results)
        summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("FINISHED", "FAILED", "SKIPPED"))
        (sweep_dir / "comparison.md").write_text(table + "\n\n" + summary + "\n")
        print(f"\n== sweep {sweep_dir}: {summary} ==\n{table}")
        boards = _leaderboards(results, sweep_dir) if counts.get("FINISHED") else []
        if self.tracker is not None:
            self.tracker.log_artifact(sweep_dir / "comparison.md")
            for path in boards:
                self.tracker.log_artifact(path, "leaderboard")
            self.tracker.end("FAILED" if counts.get("FAILED") else "FINISHED")
        if counts.get("FAILED"):
            sys.exit(1)


def _earlier_parent(tracker, sweep_dir: Path) -> str | None:
    """The parent run an earlier launch of this sweep directory started, where this tracker's store
    and experiment hold it still; else None (a new parent run)."""
    run_id, uri = parent_run_id(sweep_dir), getattr(tracker, "uri", None)
    if run_id is None or uri is None:
        return None
    from mlflow import MlflowClient

    try:
        client = MlflowClient(uri)
        run = client.get_run(run_id)
        held = client.get_experiment(run.info.experiment_id).name == tracker.experiment
    except Exception as err:  # noqa: BLE001 -- another store, or one that does not answer: a new parent
        print(f"[harness] sweep: {uri} does not hold run {run_id} of {sweep_dir / PARENT_FILE} "
              f"({type(err).__name__}); a new parent run", flush=True)
        return None
    return run_id if held and run.info.lifecycle_stage == "active" else None


def _leaderboards(results: list[dict], sweep_dir: Path) -> list[Path]:
    """The sweep's leaderboard (Markdown and the HTML page with plots), written beside its cells."""
    from harness.leaderboard import build
    from harness.leaderboard_render import RENDERERS

    board = build(results)
    paths = []
    for fmt in ("md", "html"):
        paths.append(sweep_dir / f"leaderboard.{fmt}")
        paths[-1].write_text(RENDERERS[fmt](board))
    return paths
