"""CodeXGLUE metrics, computed exactly as the official evaluators compute them.

    from metrics import compute, METRIC_KEYS
    compute("code_refinement", refs, preds, lang="java")  # unrounded, official scale

See METRICS.md (shared/codexglue) for the contract; `python -m metrics TASK --gold F --predictions F`
reads the official files.
"""
from __future__ import annotations

from typing import Any

from .registry import CODEBLEU_KEYS, SPECS, spec

TASKS = tuple(SPECS)
#: keys returned by compute() per task (CodeBLEU keys are added for generation tasks given lang=)
METRIC_KEYS: dict[str, tuple[str, ...]] = {name: s.keys for name, s in SPECS.items()}
#: headline key per task (what a leaderboard column shows)
PRIMARY_KEY: dict[str, str] = {name: s.primary for name, s in SPECS.items()}


def _check_task(name: str) -> None:
    spec(name)


def compute(name: str, references: list, predictions: list, **kwargs: Any) -> dict[str, float]:
    """Score in-memory references/predictions of task `name`; unrounded, on the official scale.

    kwargs: lang= (generation tasks: adds the CodeBLEU keys, 0-1).
    """
    metric = spec(name)
    references, predictions = list(references), list(predictions)
    if len(references) != len(predictions):
        raise ValueError(f"{name}: {len(references)} references but {len(predictions)} predictions")
    return metric.compute(references, predictions, **kwargs)


def compute_per_example(name: str, references: list, predictions: list, **kwargs: Any):
    """Per-example sufficient statistics (rows) and the function that turns their column sums into
    compute()'s values; see metrics.bootstrap.SufficientStats."""
    from .bootstrap import sufficient_stats
    return sufficient_stats(name, references, predictions, **kwargs)


def round_value(key: str, value: float, name: str | None = None) -> float:
    """One value at the official evaluator's printed precision (each metric's spec says it; without
    a metric name, the first rule any metric gives the key)."""
    if name is not None:
        rule = {**{k: None for k in spec(name).optional}, **spec(name).rounding}.get(key)
    else:
        rule = next((s.rounding[key] for s in SPECS.values() if key in s.rounding), None)
    if rule is None or isinstance(value, int):
        return value
    kind, digits = rule
    if kind == "np":
        import numpy as np
        return float(np.round(np.float64(value), digits))
    return round(float(value), digits)


def round_official(name: str, scores: dict[str, float]) -> dict[str, float]:
    """compute()'s dict at the official report rounding of task `name`."""
    _check_task(name)
    return {k: round_value(k, v, name) for k, v in scores.items()}


__all__ = ["compute", "compute_per_example", "round_official", "round_value", "METRIC_KEYS", "TASKS",
           "PRIMARY_KEY", "CODEBLEU_KEYS"]
