"""The CodeSearchNet challenge's MRR: each item ranked within a pool of 1,000 test pairs.

What github/CodeSearchNet does (src/model_test.py, MrrSearchTester.evaluate and compute_ranks, at
commit 106e827405c968597da938f6b373d30183918869), and what this module follows:

- one language's test rows, in file order, are shuffled once: `np.random.seed(0)`, then
  `np.random.shuffle(idxs)` (`pools(n, size, seed=0)` draws the same permutation);
- the shuffled rows are cut in order into batches of `--test-batch-size` (1,000 by default, src/test.py);
  the last, smaller batch is dropped; a test set smaller than one batch is one batch of all its rows;
- within a batch, `cdist(code_representations, query_representations, 'cosine')`: row i is code i,
  and its rank is the number of the batch's queries at most as far from it as its own query (its own
  included: ties count against it). So the challenge ranks, for each code, the batch's 1,000 queries
  (`anchor="code"` here); `anchor="query"` ranks, for each query, the batch's codes;
- MRR = the mean over batches of each batch's mean 1/rank, which is the mean over all ranked items
  (every batch has the same size).

The harness's own files for it (the challenge writes none; it computes the MRR in memory):
  answers.jsonl     {"index": row of the test split, "url": func_code_url, "pool": k,
                     "position": place in pool k, "pool_size": items in pool k}, one per ranked item
  predictions.txt   `index<TAB>rank`, the 1-based rank of the item's own partner in its pool
In memory (metrics.compute("codesearchnet_mrr", references, predictions)): references are the pool
sizes, predictions the ranks, one per ranked item.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import formats

ANCHORS = ("query", "code")


def pools(n: int, size: int, seed: int | None = 0) -> list[np.ndarray]:
    """Row positions (0..n-1) of each pool: shuffled by the challenge's seeded numpy shuffle (seed
    None: in order), cut into pools of `size`, the smaller last one dropped; n < size: one pool."""
    if size < 1:
        raise ValueError(f"pool size must be at least 1, got {size}")
    order = np.arange(n)
    if seed is not None:
        np.random.RandomState(seed).shuffle(order)  # = np.random.seed(seed); np.random.shuffle(order)
    size = min(size, n)
    return [order[start:start + size] for start in range(0, n - size + 1, size)] if n else []


def pool_ranks(query_emb: np.ndarray, code_emb: np.ndarray, pools_: Sequence[np.ndarray],
               anchor: str = "code") -> np.ndarray:
    """Rank of each pooled item's partner within its pool, pool after pool, in pool order. Rows of
    the embeddings are L2-normalised, so a dot product is the cosine similarity, and "at most as far"
    (cosine distance) is "at least as similar"."""
    if anchor not in ANCHORS:
        raise ValueError(f"pool anchor {anchor!r}: expected one of {list(ANCHORS)}")
    q, c = np.asarray(query_emb, dtype=np.float32), np.asarray(code_emb, dtype=np.float32)
    out = []
    for idx in pools_:
        scores = q[idx] @ c[idx].T            # [query, code]
        if anchor == "code":
            scores = scores.T                 # [code, query], as the challenge's cdist(code, query)
        own = np.diag(scores)[:, None]
        out.append((scores >= own).sum(axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, dtype=np.int64)


def reciprocal_ranks(pool_sizes: Sequence[int], ranks: Sequence[int]) -> list[float]:
    """1/rank of each ranked item; a rank outside 1..its pool's size is an error naming the item."""
    if len(pool_sizes) != len(ranks):
        raise ValueError(f"{len(pool_sizes)} pool sizes (references) but {len(ranks)} ranks (predictions)")
    out = []
    for i, (size, rank) in enumerate(zip(pool_sizes, ranks)):
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= size:
            raise ValueError(f"item {i}: rank {rank!r}; expected an integer in 1..{size} (its pool's size)")
        out.append(1.0 / int(rank))
    return out


def mrr(pool_sizes: Sequence[int], ranks: Sequence[int]) -> float:
    found = reciprocal_ranks(pool_sizes, ranks)
    if not found:
        raise ValueError("no ranked item: a test split needs at least one pool")
    return float(np.mean(found))


# ---- files --------------------------------------------------------------------------------------------
def write(gold: Path, pred: Path, keys: Sequence, pool_sizes: Sequence[int], ranks: Sequence[int]) -> None:
    """keys: (index, url, pool, position) of each ranked item, in the order of the ranks."""
    import json

    with open(gold, "w", encoding="utf-8") as f:
        for (index, url, pool, position), size in zip(keys, pool_sizes):
            f.write(json.dumps({"index": int(index), "url": url, "pool": int(pool), "position": int(position),
                                "pool_size": int(size)}, ensure_ascii=False) + "\n")
    formats.write_idx_labels(pred, ((int(k[0]), int(r)) for k, r in zip(keys, ranks)))


def read(gold: str, pred: str) -> tuple[list[int], list[int]]:
    """(pool sizes, ranks) in the gold file's order; every gold index needs its rank."""
    sizes = {}
    for n, obj in enumerate(formats.read_jsonl(gold, ("index", "pool_size")), 1):
        if not isinstance(obj["pool_size"], int) or obj["pool_size"] < 1:
            raise formats.FormatError(f"{gold}: entry {n}: pool_size {obj['pool_size']!r}; expected a positive integer")
        sizes[str(obj["index"])] = obj["pool_size"]
    ranks = formats.read_idx_labels(pred, "\t")
    missing = next((k for k in sizes if k not in ranks), None)
    if missing is not None:
        raise formats.FormatError(f"{pred}: missing prediction for index {missing!r} (every gold index needs a rank)")
    return list(sizes.values()), [ranks[k] for k in sizes]
