"""CodeXGLUE metrics, computed exactly as the official evaluators compute them.

    from metrics import compute, METRIC_KEYS
    compute("code_refinement", refs, preds, lang="java")  # unrounded, official scale

See METRICS.md (shared/codexglue) for the contract; `python -m metrics TASK --gold F --predictions F`
reads the official files.
"""
from __future__ import annotations

from typing import Any

TASKS = (
    "clone_detection_big_clone_bench", "clone_detection_poj104", "defect_detection",
    "code_completion_token", "code_completion_line", "code_refinement", "code_to_code_trans",
    "text_to_code", "code_to_text", "nl_code_search_adv", "nl_code_search_webquery",
)
CODEBLEU_KEYS = ("codebleu", "ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match")
GENERATION_TASKS = ("code_refinement", "code_to_code_trans", "text_to_code")

#: keys returned by compute() per task (CodeBLEU keys are added for generation tasks given lang=)
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "clone_detection_big_clone_bench": ("f1", "precision", "recall"),
    "clone_detection_poj104": ("map_at_r",),
    "defect_detection": ("accuracy",),
    "code_completion_token": ("token_accuracy", "total_tokens"),
    "code_completion_line": ("exact_match", "edit_sim"),
    "code_refinement": ("bleu", "exact_match"),
    "code_to_code_trans": ("bleu", "exact_match"),
    "text_to_code": ("bleu", "exact_match"),
    "code_to_text": ("bleu", "total", "skipped"),
    "nl_code_search_adv": ("mrr",),
    "nl_code_search_webquery": ("accuracy", "f1", "precision", "recall"),
}

#: headline key per task (what a leaderboard column shows)
PRIMARY_KEY: dict[str, str] = {
    "clone_detection_big_clone_bench": "f1", "clone_detection_poj104": "map_at_r",
    "defect_detection": "accuracy", "code_completion_token": "token_accuracy",
    "code_completion_line": "exact_match", "code_refinement": "bleu", "code_to_code_trans": "bleu",
    "text_to_code": "bleu", "code_to_text": "bleu", "nl_code_search_adv": "mrr",
    "nl_code_search_webquery": "accuracy",
}

# official printed precision per key: ("py", n) = Python round(x, n); ("np", n) = numpy round of an
# np.float64 (MAP@R, MRR); None = printed unrounded.
_ROUNDING: dict[str, tuple[str, int] | None] = {
    "f1": None, "precision": None, "recall": None, "accuracy": None, "map_at_r": ("np", 4),
    "mrr": ("np", 4), "token_accuracy": ("py", 2), "total_tokens": None, "exact_match": ("py", 2),
    "edit_sim": ("py", 2), "bleu": ("py", 2), "total": None, "skipped": None,
    "codebleu": None, "ngram_match": None, "weighted_ngram_match": None, "syntax_match": None,
    "dataflow_match": None,
}


def _check_task(name: str) -> None:
    if name not in METRIC_KEYS:
        raise ValueError(f"unknown task {name!r}; one of: {', '.join(TASKS)}")


def compute(name: str, references: list, predictions: list, **kwargs: Any) -> dict[str, float]:
    """Score in-memory references/predictions of task `name`; unrounded, on the official scale.

    kwargs: lang= (generation tasks: adds the CodeBLEU keys, 0-1).
    """
    _check_task(name)
    references, predictions = list(references), list(predictions)
    if len(references) != len(predictions):
        raise ValueError(f"{name}: {len(references)} references but {len(predictions)} predictions")
    if name == "clone_detection_big_clone_bench":
        from .classification import binary_prf
        return binary_prf(references, predictions)
    if name == "nl_code_search_webquery":
        from .classification import accuracy, binary_prf
        return {"accuracy": accuracy(references, predictions), **binary_prf(references, predictions)}
    if name == "defect_detection":
        from .classification import accuracy
        return {"accuracy": accuracy(references, predictions)}
    if name == "clone_detection_poj104":
        from .retrieval import map_at_r
        return {"map_at_r": map_at_r(references, predictions)}
    if name == "nl_code_search_adv":
        from .retrieval import mrr
        return {"mrr": mrr(references, predictions)}
    if name == "code_completion_token":
        from .completion import token_accuracy
        return token_accuracy(references, predictions)
    if name == "code_completion_line":
        from .completion import line_completion
        return line_completion(references, predictions)
    if name == "code_to_text":
        from .bleu import code_to_text_bleu
        return code_to_text_bleu(references, predictions)
    # generation: refinement / translation / CONCODE
    from .bleu import corpus_bleu
    from .generation import exact_match
    out = {"bleu": corpus_bleu(references, predictions), "exact_match": exact_match(name, references, predictions)}
    lang = kwargs.get("lang")
    if lang:
        from .code_bleu import code_bleu
        out.update(code_bleu(references, predictions, lang))
    return out


def compute_per_example(name: str, references: list, predictions: list, **kwargs: Any):
    """Per-example sufficient statistics (rows) and the function that turns their column sums into
    compute()'s values; see metrics.bootstrap.SufficientStats."""
    from .bootstrap import sufficient_stats
    return sufficient_stats(name, references, predictions, **kwargs)


def round_value(key: str, value: float, name: str | None = None) -> float:
    """One value at the official evaluator's printed precision (code_to_text prints BLEU unrounded)."""
    rule = None if name == "code_to_text" else _ROUNDING.get(key)
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
