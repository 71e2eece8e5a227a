"""Uncertainty over test examples: bootstrap confidence intervals and paired significance tests.

Every metric is written as f(column sums of per-example statistics) (SufficientStats), so one
resample is a weighted sum: corpus BLEU over 10,000 pairs x 1,000 resamples takes seconds.
Hand-written: scipy.stats.bootstrap resamples the raw data and recomputes the statistic, which for
corpus BLEU means re-tokenising every resample.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import PRIMARY_KEY
from .registry import SufficientStats, spec

__all__ = ["SufficientStats", "sufficient_stats", "confidence_interval", "paired_test"]


def sufficient_stats(name: str, references: list, predictions: list, **kwargs: Any) -> SufficientStats:
    """Per-example statistics of metric `name` (its spec's `stats`, metrics/registry.py)."""
    metric = spec(name)
    if len(references) != len(predictions):
        raise ValueError(f"{name}: {len(references)} references but {len(predictions)} predictions")
    return metric.stats(list(references), list(predictions), **kwargs)


def _count_blocks(n: int, n_resamples: int, seed: int):
    """Bootstrap resamples of n examples as (b, n) multinomial count blocks, seeded; the same draws
    whatever the block size."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield start, np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


@functools.lru_cache(maxsize=8)
def _counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """All count blocks at once, kept: a leaderboard resamples many runs of one test split alike."""
    return np.vstack([block for _, block in _count_blocks(n, n_resamples, seed)])


def _resample_sums(rows: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, k) column sums of bootstrap resamples (multinomial counts x rows)."""
    n = rows.shape[0]
    if n * n_resamples <= 4_000_000:  # 32 MB of counts at most
        return _counts(n, n_resamples, seed) @ rows
    out = np.empty((n_resamples, rows.shape[1]))
    for start, block in _count_blocks(n, n_resamples, seed):
        out[start:start + len(block)] = block @ rows
    return out


def confidence_interval(name: str, references: list, predictions: list, n_resamples: int = 1000,
                        seed: int = 0, alpha: float = 0.05, **kw: Any) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) interval per key, resampling test examples with replacement."""
    st = sufficient_stats(name, references, predictions, **kw)
    sums = _resample_sums(st.rows, n_resamples, seed)
    keys = [k for k in st.finalize(sums[0]) if k not in ("total_tokens", "total", "skipped")]
    values = {k: st.scores(sums, k) for k in keys}
    return {k: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) for k, v in values.items()}


def paired_test(name: str, references: list, predictions_a: list, predictions_b: list, key: str | None = None,
                n_resamples: int = 1000, seed: int = 0, **kw: Any) -> dict[str, Any]:
    """p-value for H0 "A and B score the same on `key`" over the same test examples.

    Accuracy-type keys (accuracy, exact_match): exact McNemar test on the discordant pairs.
    Other keys: paired bootstrap (same resampled examples for A and B); two-sided p-value
    2 * min(P(delta <= 0), P(delta >= 0)) with delta = B - A, clipped to 1.
    """
    key = key or PRIMARY_KEY[name]
    sa = sufficient_stats(name, references, predictions_a, **kw)
    sb = sufficient_stats(name, references, predictions_b, **kw)
    score_a = sa.finalize(sa.rows.sum(axis=0))[key]
    score_b = sb.finalize(sb.rows.sum(axis=0))[key]
    if key in sa.correct_column:
        from scipy.stats import binomtest
        col = sa.correct_column[key]
        a, b = sa.rows[:, col] > 0.5, sb.rows[:, col] > 0.5
        n01, n10 = int((~a & b).sum()), int((a & ~b).sum())
        p = 1.0 if n01 + n10 == 0 else float(binomtest(n01, n01 + n10, 0.5).pvalue)
        return {"key": key, "score_a": score_a, "score_b": score_b, "delta": score_b - score_a,
                "p_value": p, "method": "mcnemar_exact", "b_only_correct": n01, "a_only_correct": n10}
    rows = np.column_stack([sa.rows, sb.rows])
    k = sa.rows.shape[1]
    sums = _resample_sums(rows, n_resamples, seed)
    deltas = sb.scores(sums[:, k:], key) - sa.scores(sums[:, :k], key)
    p = min(1.0, 2 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))))
    return {"key": key, "score_a": score_a, "score_b": score_b, "delta": score_b - score_a, "p_value": p,
            "method": "paired_bootstrap", "n_resamples": n_resamples}
