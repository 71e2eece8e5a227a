"""The one registry of the official CodeXGLUE metrics: a spec per metric, in one place.

A spec holds everything the harness needs of a metric: its keys and primary key, the range of each
key (so that intervals never leave it) and its official rounding, `compute` (the official
evaluator's values), `stats` (per-example sufficient statistics for the bootstrap, see
metrics.bootstrap), and the official file reader and writer. Adding a metric is one entry here and
its golden cases; an incomplete entry is an error at import, never a fall-back to another metric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from . import codesearchnet, formats
from . import official_files as files
from .bleu import N_STATS
from . import aixbench as _nl2code

UNIT, PERCENT = (0.0, 1.0), (0.0, 100.0)
CODEBLEU_KEYS = ("codebleu", "ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match")
CODEBLEU_BOUNDS = {k: UNIT for k in CODEBLEU_KEYS}
CODEBLEU_ROUNDING: dict[str, tuple[str, int] | None] = {k: None for k in CODEBLEU_KEYS}


@dataclass
class SufficientStats:
    """rows: (n_examples, k) statistics; finalize(column_sums) -> {key: value} as compute() gives."""
    rows: np.ndarray
    finalize: Callable[[np.ndarray], dict[str, float]]
    correct_column: dict[str, int]  # key -> column holding a per-example 0/1 correctness (McNemar)
    # finalize over many column sums at once ((r, k) -> {key: (r,) values}), where it can be vectorised
    finalize_many: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None

    def scores(self, sums: np.ndarray, key: str) -> np.ndarray:
        """`key` of finalize() for each row of sums (bootstrap resamples), vectorised where possible."""
        if self.finalize_many is not None:
            out = self.finalize_many(sums)
            if key in out:
                return np.asarray(out[key], dtype=np.float64)
        return np.asarray([self.finalize(row)[key] for row in sums], dtype=np.float64)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    keys: tuple[str, ...]
    primary: str
    bounds: Mapping[str, tuple[float, float]]
    rounding: Mapping[str, tuple[str, int] | None]   # ("py", n): round(x, n); ("np", n): numpy round
    compute: Callable[..., dict[str, float]]          # (references, predictions, **kwargs)
    stats: Callable[..., SufficientStats]             # (references, predictions, **kwargs)
    read: Callable[[str, str], tuple[list, list]]     # (gold file, predictions file) -> compute()'s inputs
    write: Callable[[Path, Path, Sequence, Sequence, Sequence], None]  # (gold, predictions, keys, refs, preds)
    gold_ext: str
    features: Mapping[str, str]                       # evaluate input types: int, str, list[int], list[str]
    examples: Mapping[str, int] = field(default_factory=dict)  # per-example score -> its stats column
    optional: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # keys only some calls give


class RegistryError(RuntimeError):
    """A metric spec that does not say everything the harness needs."""


# ---- per-example statistics ---------------------------------------------------------------------------
def _mean_stats(values: Sequence[float], key: str, scale: float = 1.0) -> SufficientStats:
    rows = np.column_stack([np.asarray(values, dtype=np.float64), np.ones(len(values))])
    return SufficientStats(rows, lambda s: {key: s[0] / s[1] * scale}, {},
                           lambda s: {key: s[:, 0] / s[:, 1] * scale})


def _confusion_stats(keys: Sequence[str]) -> Callable[..., SufficientStats]:
    def stats(references, predictions, **_):
        from .classification import confusion_rows, prf_from_counts, prf_from_count_arrays

        # tp, fp, fn, tn of the positive class 1, then a correct flag: with more than two classes a
        # wrong label that is not 1 counts as tn, so accuracy is the flags' mean, never (tp + tn) / n
        correct = np.asarray(references, dtype=np.int64) == np.asarray(predictions, dtype=np.int64)
        rows = np.column_stack([confusion_rows(references, predictions), correct.astype(np.float64)])

        def finalize(s):
            return {k: v for k, v in {**prf_from_counts(*s[:4]), "accuracy": float(s[4] / s[:4].sum())}.items()
                    if k in keys}

        def finalize_many(s):
            return {**prf_from_count_arrays(*s[:, :4].T), "accuracy": s[:, 4] / s[:, :4].sum(axis=1)}
        return SufficientStats(rows, finalize, {"accuracy": 4}, finalize_many)
    return stats


def _generation_stats(name: str) -> Callable[..., SufficientStats]:
    """Corpus BLEU's n-gram counts, the exact-match flag, and CodeBLEU's parts when lang= is given."""
    def stats(references, predictions, lang: str | None = None, **_):
        from .bleu import N_STATS, bleu_from_stats, bleu_from_stats_many, corpus_stats
        from .generation import exact_match_flags

        em = np.asarray(exact_match_flags(name, references, predictions), dtype=np.float64)
        parts = [corpus_stats(references, predictions), em, np.ones(len(em))]
        if lang:
            from .code_bleu import codebleu_rows
            parts.append(codebleu_rows(references, predictions, lang))
        rows = np.column_stack(parts)

        def finalize(s: np.ndarray) -> dict[str, float]:
            out = {"bleu": 100 * bleu_from_stats(s[:N_STATS]), "exact_match": s[N_STATS] / s[N_STATS + 1] * 100}
            if lang:
                from .code_bleu import codebleu_from_sums
                out.update(codebleu_from_sums(s[N_STATS + 2:]))
            return out
        def finalize_many(s: np.ndarray) -> dict[str, np.ndarray]:
            return {"bleu": 100 * bleu_from_stats_many(s[:, :N_STATS]),
                    "exact_match": s[:, N_STATS] / s[:, N_STATS + 1] * 100}
        return SufficientStats(rows, finalize, {"exact_match": N_STATS}, finalize_many)
    return stats


def _generation_compute(name: str) -> Callable[..., dict[str, float]]:
    def compute(references, predictions, lang: str | None = None, **_):
        from .bleu import corpus_bleu
        from .generation import exact_match

        out = {"bleu": corpus_bleu(references, predictions), "exact_match": exact_match(name, references, predictions)}
        if lang:
            from .code_bleu import code_bleu
            out.update(code_bleu(references, predictions, lang))
        return out
    return compute


def _token_stats(references, predictions, **_):
    from .completion import token_counts

    rows = np.asarray([token_counts(list(g), list(p)) for g, p in zip(references, predictions)],
                      dtype=np.float64).reshape(-1, 2)
    return SufficientStats(rows, lambda s: {"token_accuracy": s[0] / s[1] * 100, "total_tokens": int(s[1])}, {},
                           lambda s: {"token_accuracy": s[:, 0] / s[:, 1] * 100})


def _line_stats(references, predictions, **_):
    from .completion import line_scores

    rows = np.asarray([[*line_scores(g, p), 1.0] for g, p in zip(references, predictions)],
                      dtype=np.float64).reshape(-1, 3)
    return SufficientStats(rows, lambda s: {"exact_match": s[0] / s[2] * 100, "edit_sim": s[1] / s[2]},
                           {"exact_match": 0}, lambda s: {"exact_match": s[:, 0] / s[:, 2] * 100, "edit_sim": s[:, 1] / s[:, 2]})


# ---- the registry -------------------------------------------------------------------------------------
def _bcb_compute(refs, preds, **_):
    from .classification import binary_prf
    return binary_prf(refs, preds)


def _webquery_compute(refs, preds, **_):
    from .classification import accuracy, binary_prf
    return {"accuracy": accuracy(refs, preds), **binary_prf(refs, preds)}


def _defect_compute(refs, preds, **_):
    from .classification import accuracy
    return {"accuracy": accuracy(refs, preds)}


def _poj_compute(refs, preds, **_):
    from .retrieval import map_at_r
    return {"map_at_r": map_at_r(refs, preds)}


def _poj_stats(refs, preds, **_):
    from .retrieval import map_at_r_per_item
    return _mean_stats(map_at_r_per_item(refs, preds), "map_at_r")


def _adv_compute(refs, preds, **_):
    from .retrieval import mrr
    return {"mrr": mrr(refs, preds)}


def _adv_stats(refs, preds, **_):
    from .retrieval import reciprocal_ranks
    return _mean_stats(reciprocal_ranks(refs, preds), "mrr")


def _token_compute(refs, preds, **_):
    from .completion import token_accuracy
    return token_accuracy(refs, preds)


def _line_compute(refs, preds, **_):
    from .completion import line_completion
    return line_completion(refs, preds)


def _c2t_compute(refs, preds, **_):
    from .bleu import code_to_text_bleu
    return code_to_text_bleu(refs, preds)


def _c2t_stats(refs, preds, **_):
    from .bleu import code_to_text_scores
    scores, _ = code_to_text_scores(refs, list(preds))
    return _mean_stats(scores, "bleu", 100.0)


PRF = {"f1": UNIT, "precision": UNIT, "recall": UNIT}
LABELS = {"predictions": "int", "references": "int"}
TEXTS = {"predictions": "str", "references": "str"}
GENERATION = dict(bounds={"bleu": PERCENT, "exact_match": PERCENT}, rounding={"bleu": ("py", 2), "exact_match": ("py", 2)},
                  gold_ext="txt", features=TEXTS, optional=CODEBLEU_BOUNDS,
                  examples={"exact_match": N_STATS})  # the exact-match flag follows BLEU's N_STATS counts


def _generation(name: str, **kw) -> MetricSpec:
    spec = {**GENERATION, **kw}
    return MetricSpec(name, ("bleu", "exact_match"), "bleu", compute=_generation_compute(name),
                      stats=_generation_stats(name), **spec)


SPECS: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec("clone_detection_big_clone_bench", ("f1", "precision", "recall"), "f1", PRF,
               {k: None for k in PRF}, _bcb_compute, _confusion_stats(PRF),
               lambda g, p: files.align(formats.read_pair_labels(g), formats.read_pair_labels(p), p, "pair"),
               files.write_bcb, "txt", LABELS, {"correct": 4}),
    MetricSpec("nl_code_search_webquery", ("accuracy", "f1", "precision", "recall"), "accuracy",
               {"accuracy": UNIT, **PRF}, {"accuracy": None, **{k: None for k in PRF}}, _webquery_compute,
               _confusion_stats(("accuracy", *PRF)),
               lambda g, p: files.align(formats.read_idx_labels(g, "\t"), formats.read_idx_labels(p, "\t"), p, "idx"),
               files.write_idx_labels, "txt", LABELS, {"correct": 4}),
    MetricSpec("defect_detection", ("accuracy",), "accuracy", {"accuracy": UNIT}, {"accuracy": None},
               _defect_compute, _confusion_stats(("accuracy",)),
               lambda g, p: files.align(formats.read_devign_gold(g), formats.read_idx_labels(p), p, "idx"),
               files.write_devign, "jsonl", LABELS, {"correct": 4}),
    MetricSpec("clone_detection_poj104", ("map_at_r",), "map_at_r", {"map_at_r": UNIT}, {"map_at_r": ("np", 4)},
               _poj_compute, _poj_stats, files.read_poj104, files.write_poj104, "jsonl",
               {"predictions": "list[int]", "references": "int"}, {"average_precision_at_r": 0}),
    MetricSpec("nl_code_search_adv", ("mrr",), "mrr", {"mrr": UNIT}, {"mrr": ("np", 4)}, _adv_compute, _adv_stats,
               files.read_advtest, files.write_advtest, "jsonl", {"predictions": "list[int]", "references": "int"},
               {"reciprocal_rank": 0}),
    MetricSpec("code_completion_token", ("token_accuracy", "total_tokens"), "token_accuracy",
               {"token_accuracy": PERCENT, "total_tokens": (0.0, float("inf"))},
               {"token_accuracy": ("py", 2), "total_tokens": None}, _token_compute, _token_stats, files.read_tokens,
               files.write_tokens, "txt", {"predictions": "list[str]", "references": "list[str]"},
               {"correct_tokens": 0, "tokens": 1}),
    MetricSpec("code_completion_line", ("exact_match", "edit_sim"), "exact_match",
               {"exact_match": PERCENT, "edit_sim": PERCENT}, {"exact_match": ("py", 2), "edit_sim": ("py", 2)},
               _line_compute, _line_stats, files.read_lines_pair(files.jsonl_field("gt")), files.write_jsonl_gold("gt"), "jsonl",
               TEXTS, {"exact_match": 0, "edit_sim": 1}),
    _generation("code_refinement", read=files.read_lines_pair(formats.read_text_lines), write=files.write_lines),
    _generation("code_to_code_trans", read=files.read_lines_pair(formats.read_text_lines), write=files.write_lines),
    _generation("text_to_code", read=files.read_lines_pair(files.jsonl_field("code")), write=files.write_jsonl_gold("code"),
                gold_ext="jsonl"),
    MetricSpec("code_to_text", ("bleu", "total", "skipped"), "bleu",
               {"bleu": PERCENT, "total": (0.0, float("inf")), "skipped": (0.0, float("inf"))},
               {"bleu": None, "total": None, "skipped": None}, _c2t_compute, _c2t_stats, files.read_code_to_text,
               files.write_id_text, "txt", TEXTS, {"sentence_bleu": 0}),
    # CodeSearchNet challenge MRR within pools of 1,000 (metrics/codesearchnet.py): references are pool
    # sizes, predictions the 1-based ranks; src/model_test.py prints it at 3 decimals
    MetricSpec("codesearchnet_mrr", ("mrr",), "mrr", {"mrr": UNIT}, {"mrr": ("py", 3)},
               lambda r, p, **_: {"mrr": codesearchnet.mrr(r, p)},
               lambda r, p, **_: _mean_stats(codesearchnet.reciprocal_ranks(r, p), "mrr"),
               codesearchnet.read, codesearchnet.write, "jsonl", {"predictions": "int", "references": "int"},
               {"reciprocal_rank": 0}),
    # nl2code (AixBench, metrics/aixbench.py): syntax validity of the Java methods (0-100), reference-free;
    # BLEU, exact match (text_to_code's) and CodeBLEU (lang=java) only where the gold rows carry code
    MetricSpec("nl2code", ("syntax_valid",), "syntax_valid", {"syntax_valid": PERCENT},
               {"syntax_valid": ("py", 2), "bleu": ("py", 2), "exact_match": ("py", 2)}, _nl2code.compute,
               _nl2code.stats, _nl2code.read, _nl2code.write, "jsonl", TEXTS, {"syntax_valid": 0},
               optional={"bleu": PERCENT, "exact_match": PERCENT, **CODEBLEU_BOUNDS}),
)}


def _validate(specs: Mapping[str, MetricSpec]) -> None:
    """Every spec complete: the primary among its keys, a range and a rounding rule for every key,
    callables where callables belong, a known input type. An error at import, not at scoring."""
    types = {"int", "str", "list[int]", "list[str]"}
    for name, s in specs.items():
        problems = []
        if s.primary not in s.keys:
            problems.append(f"primary {s.primary!r} is not among keys {s.keys}")
        problems += [f"no range for {k!r}" for k in s.keys if k not in s.bounds]
        problems += [f"no rounding rule for {k!r}" for k in s.keys if k not in s.rounding]
        problems += [f"{f} is not callable" for f in ("compute", "stats", "read", "write") if not callable(getattr(s, f))]
        problems += [f"unknown input type {t!r}" for t in s.features.values() if t not in types]
        if not s.gold_ext:
            problems.append("no gold file extension")
        if not s.examples:
            problems.append("no per-example score (examples)")
        if problems:
            raise RegistryError(f"metric spec {name!r}: " + "; ".join(problems))


_validate(SPECS)


def spec(name: str) -> MetricSpec:
    if name not in SPECS:
        raise ValueError(f"unknown metric {name!r}; one of: {', '.join(SPECS)}")
    return SPECS[name]


def bounds(name: str, key: str) -> tuple[float, float]:
    """The range of a key of a metric (CodeBLEU's parts included)."""
    s = spec(name)
    return {**s.optional, **s.bounds}.get(key, (float("-inf"), float("inf")))


def per_example(name: str, references: list, predictions: list) -> dict[str, list[float]]:
    """Each example's own scores (the spec's `examples` columns of its statistics)."""
    found = spec(name)
    rows = found.stats(list(references), list(predictions)).rows
    return {key: rows[:, col].tolist() for key, col in found.examples.items()}
