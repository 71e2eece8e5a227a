"""Classification metrics: BigCloneBench / WebQuery binary P/R/F1, Devign / WebQuery accuracy.

scikit-learn computes exactly what the official evaluators call (precision_score, recall_score,
f1_score with average='binary', pos_label=1, default zero_division), so it is used directly.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np


def _as_int(values: Sequence) -> list[int]:
    return [int(v) for v in values]  # bool True == 1, as the official comparisons do


def binary_prf(references: Sequence, predictions: Sequence) -> dict[str, float]:
    """Binary precision/recall/F1 with positive class 1, as sklearn's defaults (0-1 scale)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    y_true, y_pred = _as_int(references), _as_int(predictions)
    _check_len(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning: zero_division -> 0.0, as official
        return {
            "precision": float(precision_score(y_true, y_pred)),
            "recall": float(recall_score(y_true, y_pred)),
            "f1": float(f1_score(y_true, y_pred)),
        }


def accuracy(references: Sequence, predictions: Sequence) -> float:
    """Mean of (prediction == target) over the references (0-1), np.mean as the Devign evaluator."""
    y_true, y_pred = _as_int(references), _as_int(predictions)
    _check_len(y_true, y_pred)
    if not y_true:
        raise ValueError("accuracy of an empty reference set is undefined")
    return float(np.mean([t == p for t, p in zip(y_true, y_pred)]))


def confusion_rows(references: Sequence, predictions: Sequence) -> np.ndarray:
    """Per-example (tp, fp, fn, tn) indicator rows: P/R/F1/accuracy are functions of their sums."""
    t = np.asarray(_as_int(references)) == 1
    p = np.asarray(_as_int(predictions)) == 1
    return np.stack([t & p, ~t & p, t & ~p, ~t & ~p], axis=1).astype(np.float64)


def prf_from_counts(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    total = tp + fp + fn + tn
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": (tp + tn) / total if total else 0.0}


def prf_from_count_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """prf_from_counts over arrays of counts (one per bootstrap resample)."""
    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)
    return {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "accuracy": ratio(tp + tn, tp + fp + fn + tn)}


def _check_len(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} references but {len(b)} predictions")
