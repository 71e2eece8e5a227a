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
from .registry import spec

_TYPES = {"int": datasets.Value("int64"), "str": datasets.Value("string"),
          "list[int]": datasets.Sequence(datasets.Value("int64")), "list[str]": datasets.Sequence(datasets.Value("string"))}


def features(task: str) -> datasets.Features:
    """The evaluate input features of a metric, from its spec (metrics/registry.py)."""
    return datasets.Features({k: _TYPES[t] for k, t in spec(task).features.items()})


def metric_info(task: str) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        module_type="metric",
        description=f"CodeXGLUE {task}, scored exactly as the official evaluator (keys {', '.join(METRIC_KEYS[task])}).",
        citation="CodeXGLUE: A Machine Learning Benchmark Dataset for Code Understanding and Generation (2021)",
        inputs_description="predictions and references in the in-memory shapes of metrics.compute; kwargs: lang= for CodeBLEU",
        features=features(task),
        reference_urls=["https://github.com/microsoft/CodeXGLUE"],
    )


def run(task: str, predictions: list, references: list, **kwargs: Any) -> dict[str, float]:
    return compute(task, list(references), list(predictions), **kwargs)
