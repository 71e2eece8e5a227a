"""Gold and prediction files in each task's official CodeXGLUE format, so that the official
evaluator (or `python -m metrics <task> --gold F --predictions F`) rescores a run's predictions.
The writer of each format is part of its metric's spec (metrics/registry.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from metrics.registry import spec


def one_line(text: str) -> str:
    """The official line formats hold one example per line: strip, and newlines become spaces."""
    return " ".join(text.strip().splitlines())


def write_official(metric: str, keys: Sequence, references: Sequence, predictions: Sequence,
                   out_dir: Path, stem: str = "") -> dict[str, Path]:
    """Write `<stem>answers.<ext>` (gold) and `<stem>predictions.<ext>`; returns both paths.
    keys: each example's official id (a pair of ids for BigCloneBench, (url, idx) for AdvTest)."""
    found = spec(metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_ext = "jsonl" if found.features["predictions"].startswith("list[int]") else "txt"
    gold, pred = out_dir / f"{stem}answers.{found.gold_ext}", out_dir / f"{stem}predictions.{pred_ext}"
    found.write(gold, pred, list(keys), list(references), list(predictions))
    return {f"{stem}gold": gold, f"{stem}predictions": pred}
