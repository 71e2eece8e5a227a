"""Retrieval metrics: MAP@R (POJ-104) and MRR (AdvTest), plus full-pool ranking by similarity.

Hand-written: MAP@R here is the CodeXGLUE variant (precision at each hit / R over a list of
exactly R), which no library computes; sklearn's label_ranking_average_precision_score differs.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def poj104_answers(labels: Sequence) -> list[list[int]]:
    """For each item, the indices of all other items with the same label (extract_answers.py)."""
    by_label: dict = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(lab, []).append(i)
    return [[j for j in by_label[lab] if j != i] for i, lab in enumerate(labels)]


def average_precision_at_r(relevant: Sequence, ranked: Sequence) -> float:
    """One item's AP@R: at each hit at 0-based k append hits/(k+1); sum / R (= len(relevant))."""
    answer = set(relevant)
    if not answer:
        raise ValueError("an item with no other item of its label has R = 0: MAP@R undefined")
    if len(ranked) != len(relevant):
        raise ValueError(f"ranked list has {len(ranked)} entries, expected exactly R = {len(relevant)}")
    hits: list[float] = []
    for k, p in enumerate(ranked):
        if p in answer:
            hits.append((len(hits) + 1) / (k + 1))
    return sum(hits) / len(answer)


def map_at_r_per_item(labels: Sequence, rankings: Sequence[Sequence]) -> list[float]:
    answers = poj104_answers(labels)
    if len(rankings) != len(answers):
        raise ValueError(f"{len(answers)} items but {len(rankings)} ranked lists")
    return [average_precision_at_r(a, r) for a, r in zip(answers, rankings)]


def map_at_r(labels: Sequence, rankings: Sequence[Sequence]) -> float:
    return float(np.mean(map_at_r_per_item(labels, rankings)))


def reciprocal_ranks(gold: Sequence, rankings: Sequence[Sequence]) -> list[float]:
    """1/(1-based rank) of the gold index in each ranked list, 0 when absent (AdvTest evaluator)."""
    if len(gold) != len(rankings):
        raise ValueError(f"{len(gold)} queries but {len(rankings)} ranked lists")
    out: list[float] = []
    for g, ranked in zip(gold, rankings):
        score = 0.0
        for rank, idx in enumerate(ranked):
            if idx == g:
                score = 1 / (rank + 1)
                break
        out.append(score)
    return out


def mrr(gold: Sequence, rankings: Sequence[Sequence]) -> float:
    return float(np.mean(reciprocal_ranks(gold, rankings)))


def rank_by_similarity(
    query_emb: np.ndarray,
    code_emb: np.ndarray,
    top_k: int | None = 100,
    chunk_size: int = 1024,
    normalize: bool = False,
) -> np.ndarray:
    """Rank every code for every query by dot product against the FULL pool, chunked over queries.

    Memory is bounded by chunk_size x len(code_emb) scores. Returns int64 indices (n_queries, k),
    best first; ties keep the lower code index first (stable). top_k=None ranks the whole pool.
    """
    q = np.asarray(query_emb, dtype=np.float32)
    c = np.asarray(code_emb, dtype=np.float32)
    if normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    n_code = c.shape[0]
    k = n_code if top_k is None else min(top_k, n_code)
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], chunk_size):
        scores = q[start:start + chunk_size] @ c.T
        neg = -scores
        if k < n_code:
            part = np.argpartition(neg, k - 1, axis=1)[:, :k]
            part.sort(axis=1)  # lower index first among ties after the stable sort below
            order = np.argsort(np.take_along_axis(neg, part, axis=1), axis=1, kind="stable")
            out[start:start + chunk_size] = np.take_along_axis(part, order, axis=1)
        else:
            out[start:start + chunk_size] = np.argsort(neg, axis=1, kind="stable")
    return out


def gold_ranks(query_emb: np.ndarray, code_emb: np.ndarray, gold: Sequence[int], chunk_size: int = 1024) -> np.ndarray:
    """1-based rank of each query's gold code in the full pool (count of strictly better codes + 1)."""
    q = np.asarray(query_emb, dtype=np.float32)
    c = np.asarray(code_emb, dtype=np.float32)
    g = np.asarray(gold, dtype=np.int64)
    out = np.empty(q.shape[0], dtype=np.int64)
    for start in range(0, q.shape[0], chunk_size):
        scores = q[start:start + chunk_size] @ c.T
        gs = scores[np.arange(scores.shape[0]), g[start:start + chunk_size]]
        out[start:start + chunk_size] = (scores > gs[:, None]).sum(axis=1) + 1
    return out


def label_counts(labels: Sequence) -> Counter:
    return Counter(labels)
