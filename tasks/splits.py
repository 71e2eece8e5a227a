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


def split_by_rank(rows: Sequence[dict], by: str, fractions: Mapping[str, float]) -> dict[str, list[dict]]:
    """Order rows by the stable hash of `by` and cut the order at the fractions; every split after
    the first gets at least one row, so a small directory still has held-out files."""
    names = list(fractions)
    if len(rows) < len(names):
        raise ValueError(f"{len(rows)} items cannot fill the {len(names)} splits {names}; "
                         f"need at least {len(names)}")
    order = sorted(rows, key=lambda row: (_bucket(row[by]), str(row[by])))
    sizes = [max(1, round(fractions[name] * len(order))) for name in names[1:]]
    cut = len(order) - sum(sizes)
    if cut < 1:
        raise ValueError(f"{len(rows)} items are too few for the split fractions {dict(fractions)}")
    out, start = {names[0]: order[:cut]}, cut
    for name, size in zip(names[1:], sizes):
        out[name], start = order[start:start + size], start + size
    return out
