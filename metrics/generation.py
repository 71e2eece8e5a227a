"""Exact match of the generation tasks (refinement/translation: strip() equality; CONCODE: token lists)."""
from __future__ import annotations

from typing import Sequence


def exact_match_flags(name: str, references: Sequence, predictions: Sequence[str]) -> list[float]:
    """Per-example 0/1. code_refinement/code_to_code_trans: ref.strip() == pred.strip();
    text_to_code: pred.strip().split() == gold.split() (whitespace-insensitive)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    out = []
    for ref, pred in zip(references, predictions):
        ref = ref if isinstance(ref, str) else ref[0]
        if name == "text_to_code":
            out.append(float(pred.strip().split() == ref.split()))
        else:
            out.append(float(ref.strip() == pred.strip()))
    return out


def exact_match(name: str, references: Sequence, predictions: Sequence[str]) -> float:
    flags = exact_match_flags(name, references, predictions)
    if not flags:
        raise ValueError("empty reference set")
    return sum(flags) / len(flags) * 100
