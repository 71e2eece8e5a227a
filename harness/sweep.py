"""Hydra callback for multiruns: one parent MLflow run per sweep, a comparison at the end.

The parent run id is written to `<sweep dir>/parent_run_id`, so cells in other processes (joblib
launcher) find it. The sweep exits non-zero when any cell FAILED.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

from harness import outbox, provenance
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
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.tracker = outbox.journaled(instantiate(config.tracker), sweep_dir, scope="sweep")  # harness.sync
        overrides = " ".join(config.hydra.overrides.task)
        self.tracker.start(f"sweep {sweep_dir.name}", {**provenance.tags("sweep"), "sweep_dir": str(sweep_dir),
                                                       "sweep_overrides": overrides})
        if self.tracker.run_id:
            (sweep_dir / PARENT_FILE).write_text(self.tracker.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
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
