"""Uncertainty over test examples: bootstrap confidence intervals and paired significance tests.

Every metric is written as f(column sums of per-example statistics) (SufficientStats), so one
resample is a weighted sum: corpus BLEU over 10,000 pairs x 1,000 resamples takes seconds.
Hand-written: scipy.stats.bootstrap resamples the raw data and recomputes the statistic, which for
corpus BLEU means re-tokenising every resample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import METRIC_KEYS, PRIMARY_KEY, _check_task

@dataclass
class SufficientStats:
    """rows: (n_examples, k) statistics; finalize(column_sums) -> {key: value} as compute() gives."""
    rows: np.ndarray
    finalize: Callable[[np.ndarray], dict[str, float]]
    correct_column: dict[str, int]  # key -> column holding a per-example 0/1 correctness (McNemar)


def _mean_stats(values: Sequence[float], key: str, scale: float = 1.0) -> SufficientStats:
    rows = np.column_stack([np.asarray(values, dtype=np.float64), np.ones(len(values))])
    return SufficientStats(rows, lambda s: {key: s[0] / s[1] * scale}, {})


def sufficient_stats(name: str, references: list, predictions: list, **kwargs: Any) -> SufficientStats:
    _check_task(name)
    if len(references) != len(predictions):
        raise ValueError(f"{name}: {len(references)} references but {len(predictions)} predictions")
    if name in ("clone_detection_big_clone_bench", "nl_code_search_webquery", "defect_detection"):
        from .classification import confusion_rows, prf_from_counts
        rows = np.column_stack([confusion_rows(references, predictions), np.ones(len(references))])
        rows[:, 4] = rows[:, 0] + rows[:, 3]  # correct flag
        keys = METRIC_KEYS[name]
        return SufficientStats(rows, lambda s: {k: v for k, v in prf_from_counts(*s[:4]).items() if k in keys},
                               {"accuracy": 4})
    if name == "clone_detection_poj104":
        from .retrieval import map_at_r_per_item
        return _mean_stats(map_at_r_per_item(references, predictions), "map_at_r")
    if name == "nl_code_search_adv":
        from .retrieval import reciprocal_ranks
        return _mean_stats(reciprocal_ranks(references, predictions), "mrr")
    if name == "code_completion_token":
        from .completion import token_counts
        rows = np.asarray([token_counts(list(g), list(p)) for g, p in zip(references, predictions)], dtype=np.float64)
        return SufficientStats(rows, lambda s: {"token_accuracy": s[0] / s[1] * 100, "total_tokens": int(s[1])}, {})
    if name == "code_completion_line":
        from .completion import line_scores
        rows = np.asarray([[*line_scores(g, p), 1.0] for g, p in zip(references, predictions)], dtype=np.float64)
        return SufficientStats(rows, lambda s: {"exact_match": s[0] / s[2] * 100, "edit_sim": s[1] / s[2]},
                               {"exact_match": 0})
    if name == "code_to_text":
        from .bleu import code_to_text_scores
        scores, _ = code_to_text_scores(references, [p if p is not None else None for p in predictions])
        return _mean_stats(scores, "bleu", 100.0)
    from .bleu import N_STATS, bleu_from_stats, corpus_stats
    from .generation import exact_match_flags
    bleu_rows = corpus_stats(references, predictions)
    em = np.asarray(exact_match_flags(name, references, predictions), dtype=np.float64)
    rows = np.column_stack([bleu_rows, em, np.ones(len(em))])
    parts = [rows]
    lang = kwargs.get("lang")
    if lang:
        from .code_bleu import codebleu_rows, codebleu_from_sums
        parts.append(codebleu_rows(references, predictions, lang))
    rows = np.column_stack(parts)

    def finalize(s: np.ndarray) -> dict[str, float]:
        out = {"bleu": 100 * bleu_from_stats(s[:N_STATS]), "exact_match": s[N_STATS] / s[N_STATS + 1] * 100}
        if lang:
            out.update(codebleu_from_sums(s[N_STATS + 2:]))
        return out
    return SufficientStats(rows, finalize, {"exact_match": N_STATS})


def _resample_sums(rows: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, k) column sums of bootstrap resamples (multinomial counts x rows)."""
    n = rows.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, rows.shape[1]))
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)
        out[start:start + b] = counts @ rows
    return out


def confidence_interval(name: str, references: list, predictions: list, n_resamples: int = 1000,
                        seed: int = 0, alpha: float = 0.05, **kw: Any) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) interval per key, resampling test examples with replacement."""
    st = sufficient_stats(name, references, predictions, **kw)
    sums = _resample_sums(st.rows, n_resamples, seed)
    values: dict[str, list[float]] = {}
    for s in sums:
        for k, v in st.finalize(s).items():
            values.setdefault(k, []).append(v)
    return {k: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2)))
            for k, v in values.items() if k not in ("total_tokens", "total", "skipped")}


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
    deltas = np.asarray([sb.finalize(s[k:])[key] - sa.finalize(s[:k])[key] for s in sums])
    p = min(1.0, 2 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))))
    return {"key": key, "score_a": score_a, "score_b": score_b, "delta": score_b - score_a, "p_value": p,
            "method": "paired_bootstrap", "n_resamples": n_resamples}
