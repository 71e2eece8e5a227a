"""Shared pieces of the `evaluate` modules under metrics/<task>/<task>.py.

    evaluate.load("metrics/code_refinement").compute(predictions=..., references=..., lang="java")

Each module only declares its input features and delegates to metrics.compute (unrounded values,
official scale). Works offline: the module is a local path, nothing is fetched.
"""
from __future__ import annotations

from typing import Any

import datasets
import evaluate

from . import METRIC_KEYS, compute

_INT = datasets.Value("int64")
_STR = datasets.Value("string")
FEATURES: dict[str, dict[str, Any]] = {
    "clone_detection_big_clone_bench": {"predictions": _INT, "references": _INT},
    "defect_detection": {"predictions": _INT, "references": _INT},
    "nl_code_search_webquery": {"predictions": _INT, "references": _INT},
    "clone_detection_poj104": {"predictions": datasets.Sequence(_INT), "references": _INT},
    "nl_code_search_adv": {"predictions": datasets.Sequence(_INT), "references": _INT},
    "code_completion_token": {"predictions": datasets.Sequence(_STR), "references": datasets.Sequence(_STR)},
    "code_completion_line": {"predictions": _STR, "references": _STR},
    "code_refinement": {"predictions": _STR, "references": _STR},
    "code_to_code_trans": {"predictions": _STR, "references": _STR},
    "text_to_code": {"predictions": _STR, "references": _STR},
    "code_to_text": {"predictions": _STR, "references": _STR},
}


def metric_info(task: str) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        module_type="metric",
        description=f"CodeXGLUE {task}, scored exactly as the official evaluator (keys {', '.join(METRIC_KEYS[task])}).",
        citation="CodeXGLUE: A Machine Learning Benchmark Dataset for Code Understanding and Generation (2021)",
        inputs_description="predictions and references in the in-memory shapes of metrics.compute; kwargs: lang= for CodeBLEU",
        features=datasets.Features(FEATURES[task]),
        reference_urls=["https://github.com/microsoft/CodeXGLUE"],
    )


def run(task: str, predictions: list, references: list, **kwargs: Any) -> dict[str, float]:
    return compute(task, list(references), list(predictions), **kwargs)
