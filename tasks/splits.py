"""Stable hashing of row values into [0, 1): the same split on every machine and Python hash seed."""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence


def bucket(value: object) -> float:
    """A point in [0, 1) from the sha256 of str(value)."""
    digest = hashlib.sha256(str(value).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_rank(rows: Sequence[dict], by: str, fractions: Mapping[str, float]) -> dict[str, list[dict]]:
    """Order rows by the stable hash of `by` and cut the order at the fractions; every split after
    the first gets at least one row, so a small directory still has held-out files."""
    names = list(fractions)
    if len(rows) < len(names):
        raise ValueError(f"{len(rows)} items cannot fill the {len(names)} splits {names}; "
                         f"need at least {len(names)}")
    order = sorted(rows, key=lambda row: (bucket(row[by]), str(row[by])))
    sizes = [max(1, round(fractions[name] * len(order))) for name in names[1:]]
    cut = len(order) - sum(sizes)
    if cut < 1:
        raise ValueError(f"{len(rows)} items are too few for the split fractions {dict(fractions)}")
    out, start = {names[0]: order[:cut]}, cut
    for name, size in zip(names[1:], sizes):
        out[name], start = order[start:start + size], start + size
    return out
