"""Gold and prediction files in each task's official CodeXGLUE format, so that the official
evaluator (or `python -m metrics <task> --gold F --predictions F`) rescores a run's predictions.

One writer per official format, chosen by the task's metric name (a table, not branches).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from metrics import formats


def one_line(text: str) -> str:
    """The official line formats hold one example per line: strip, and newlines become spaces."""
    return " ".join(text.strip().splitlines())


def _lines_gold_lines(gold: Path, pred: Path, ids: Sequence, refs: Sequence, preds: Sequence) -> None:
    formats.write_lines(gold, [one_line(r) for r in refs])      # refinement, translation
    formats.write_lines(pred, preds)


def _jsonl_gold(key: str) -> Callable:
    def write(gold: Path, pred: Path, ids: Sequence, refs: Sequence, preds: Sequence) -> None:
        gold.write_text("".join(json.dumps({"id": i, key: r}, ensure_ascii=False) + "\n"
                                for i, r in zip(ids, refs)), encoding="utf-8")
        formats.write_lines(pred, preds)
    return write


def _id_text(gold: Path, pred: Path, ids: Sequence, refs: Sequence, preds: Sequence) -> None:
    formats.write_id_text(gold, zip(ids, refs))                 # code-to-text: id<TAB>text
    formats.write_id_text(pred, zip(ids, preds))


def _tokens(gold: Path, pred: Path, ids: Sequence, refs: Sequence, preds: Sequence) -> None:
    formats.write_token_lines(gold, refs)                       # token completion
    formats.write_token_lines(pred, preds)


WRITERS: dict[str, tuple[Callable, str]] = {
    "code_refinement": (_lines_gold_lines, "txt"),
    "code_to_code_trans": (_lines_gold_lines, "txt"),
    "text_to_code": (_jsonl_gold("code"), "jsonl"),
    "code_completion_line": (_jsonl_gold("gt"), "jsonl"),
    "code_to_text": (_id_text, "txt"),
    "code_completion_token": (_tokens, "txt"),
}


def write_official(metric: str, ids: Sequence, references: Sequence, predictions: Sequence,
                   out_dir: Path, stem: str = "") -> dict[str, Path]:
    """Write `<stem>answers.<ext>` (gold) and `<stem>predictions.txt`; returns both paths."""
    if metric not in WRITERS:
        raise ValueError(f"no official file writer for metric {metric!r}; one of {sorted(WRITERS)}")
    write, ext = WRITERS[metric]
    out_dir.mkdir(parents=True, exist_ok=True)
    gold, pred = out_dir / f"{stem}answers.{ext}", out_dir / f"{stem}predictions.txt"
    write(gold, pred, list(ids), list(references), list(predictions))
    return {f"{stem}gold": gold, f"{stem}predictions": pred}
