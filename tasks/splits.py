"""Deterministic splits derived from real rows, for datasets whose shipped sample lacks a split.

A row's split is decided by a stable hash (sha256) of the fields named in `by`, so the same file gives
the same split on every machine and Python hash seed. When several fields are named (the two functions
of a clone pair), a row is kept only if all of them fall in the same split: no function is shared
between train and test, so the test score is not inflated by memorised code.
"""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence


def _bucket(value: object) -> float:
    digest = hashlib.sha256(str(value).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(value: object, fractions: Mapping[str, float]) -> str:
    point, edge = _bucket(value), 0.0
    for name, share in fractions.items():
        edge += share
        if point < edge:
            return name
    return list(fractions)[-1]


def derive_splits(rows: Sequence[dict], by: Sequence[str],
                  fractions: Mapping[str, float]) -> dict[str, list[dict]]:
    """Assign each row to a split by the hash of its `by` fields; rows straddling splits are dropped."""
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise ValueError(f"split fractions {dict(fractions)} must sum to 1")
    out: dict[str, list[dict]] = {name: [] for name in fractions}
    for row in rows:
        names = {split_of(row[field], fractions) for field in by}
        if len(names) == 1:
            out[names.pop()].append(row)
    return out
