"""CodeBLEU as computed by CodeXGLUE's calc_code_bleu.py (code-to-code-trans/evaluator/CodeBLEU).

ngram_match and weighted_ngram_match come from the `codebleu` package, whose NLTK-derived BLEU code
agrees with the official one exactly. syntax_match and dataflow_match are re-implemented in
metrics/codebleu_syntax.py, codebleu_dfg.py and codebleu_dataflow.py with the official semantics
(comments removed with the Java rules for every language, the official data-flow walk and its quirks),
because the package deviates from them.

Grammars (`grammar=`, default from $CODEBLEU_GRAMMAR, else "official"):
  * "official": the tree-sitter grammar and runtime releases of the official evaluator's era (npm:
    c-sharp 0.16.1 on the 0.17.0 runtime, java and the others 0.19 on the 0.19.0 runtime, see
    metrics/legacy_grammars.py), compiled once under runs/cache by `python -m metrics.legacy_grammars
    build` (`make install`); built on first use if missing, and a clear error if that cannot be done.
    Only the official languages (java, c_sharp, python, javascript, go, php, ruby).
  * "modern": the pinned tree-sitter-* 0.21/0.22 wheels the `codebleu` package uses (also c, cpp,
    rust for syntax). Not the official numbers: e.g. ~0.011 off on the golden cases.

The official data-flow part depends on PYTHONHASHSEED (list(set(names)) orders); here those orders are
the ones CPython 3.11+ gives under PYTHONHASHSEED=0 (the golden runs' setting), computed rather than
taken from this process's hash seed, so the result is identical on every hash seed (codebleu_dfg.py).
Parity with the official evaluator, measured, and the differences that remain: metrics/CODEBLEU.md.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

import codebleu as _cb_pkg
from codebleu import bleu as _cb_bleu
from codebleu import weighted_ngram_match as _cb_weighted
from tree_sitter import Parser

from . import codebleu_dataflow as _dataflow
from .codebleu_syntax import remove_comments_java_rules  # noqa: F401  (public helper)

LANGS = ("java", "javascript", "c_sharp", "php", "c", "cpp", "python", "go", "ruby", "rust")
DFG_LANGS = _dataflow.OFFICIAL_LANGS
GRAMMARS = ("official", "modern")
KEYS = ("codebleu", "ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match")
_KEYWORDS_DIR = Path(_cb_pkg.__file__).parent / "keywords"


def _grammar(grammar: str | None) -> str:
    g = grammar or os.environ.get("CODEBLEU_GRAMMAR") or "official"
    if g not in GRAMMARS:
        raise ValueError(f"CodeBLEU grammar {g!r} unknown; one of {', '.join(GRAMMARS)}")
    return g


@functools.lru_cache(maxsize=None)
def _parser(lang: str, grammar: str) -> Parser:
    if lang not in LANGS:
        raise ValueError(f"CodeBLEU language {lang!r} not supported; one of {', '.join(LANGS)}")
    if grammar == "official":
        from .legacy_grammars import parser
        return parser(lang)
    from codebleu.utils import get_tree_sitter_language
    p = Parser()
    p.language = get_tree_sitter_language(lang)
    return p


@functools.lru_cache(maxsize=None)
def keywords(lang: str) -> frozenset[str]:
    with open(_KEYWORDS_DIR / f"{lang}.txt", encoding="utf-8") as f:
        return frozenset(x.strip() for x in f)


def structure_counts(pairs: Sequence[tuple[str, str]], lang: str, grammar: str | None = None) -> list[list[int]]:
    """[syntax matched, syntax total, dataflow matched, dataflow total] per (reference, candidate) pair
    (texts already stripped)."""
    if lang not in DFG_LANGS:
        raise ValueError(f"no data-flow extractor for {lang!r}; one of {', '.join(DFG_LANGS)}")
    parser = _parser(lang, _grammar(grammar))
    return _dataflow.pair_counts(lambda code: parser.parse(code.encode("utf-8")).root_node, str, lang, pairs)


def syntax_counts(reference: str, candidate: str, lang: str, grammar: str | None = None) -> tuple[int, int]:
    """(matched reference subtrees, reference subtrees) for one pair."""
    sm, st, _, _ = structure_counts([(reference, candidate)], lang, grammar)[0]
    return sm, st


def dataflow_counts(reference: str, candidate: str, lang: str, grammar: str | None = None) -> tuple[int, int]:
    """(matched reference data-flow edges, reference edges) for one pair, clipped like the official loop."""
    _, _, dm, dt = structure_counts([(reference, candidate)], lang, grammar)[0]
    return dm, dt


# ------------------------------------------------------------------ corpus CodeBLEU
def _refs_list(ref: Any) -> list[str]:
    return [ref.strip()] if isinstance(ref, str) else [r.strip() for r in ref]


def code_bleu(references: Sequence, predictions: Sequence[str], lang: str,
              weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
              grammar: str | None = None) -> dict[str, float]:
    """Corpus CodeBLEU and its four parts (0-1). A reference is a string or a list of strings."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    refs = [_refs_list(r) for r in references]
    hyps = [p.strip() for p in predictions]
    tok_refs = [[r.split() for r in rs] for rs in refs]
    tok_hyps = [h.split() for h in hyps]
    kw = keywords(lang)
    ngram = _cb_bleu.corpus_bleu(tok_refs, tok_hyps)
    weighted_refs = [[[t, {tok: 1 if tok in kw else 0.2 for tok in t}] for t in rs] for rs in tok_refs]
    weighted = _cb_weighted.corpus_bleu(weighted_refs, tok_hyps)
    counts = structure_counts([(r, h) for rs, h in zip(refs, hyps) for r in rs], lang, grammar)
    sm, st, dm, dt = (sum(c[i] for c in counts) for i in range(4))
    syntax = sm / st
    # the official script raises ZeroDivisionError when no reference has a data flow; 0.0 here
    dataflow = dm / dt if dt else 0.0
    a, b, g, t = weights
    return {"codebleu": a * ngram + b * weighted + g * syntax + t * dataflow, "ngram_match": ngram,
            "weighted_ngram_match": weighted, "syntax_match": syntax, "dataflow_match": dataflow}


# ------------------------------------------------------------------ per-example statistics (bootstrap)
# columns: ngram num[4], den[4], hyp_len, ref_len | weighted num[4], den[4], hyp_len, ref_len |
#          syntax matched, total | dataflow matched, total
N_CODEBLEU_STATS = 24


def codebleu_rows(references: Sequence, predictions: Sequence[str], lang: str,
                  grammar: str | None = None) -> "np.ndarray":
    """Per-example sufficient statistics; codebleu_from_sums(rows.sum(0)) == code_bleu(...)."""
    import numpy as np

    kw = keywords(lang)
    rows = np.zeros((len(predictions), N_CODEBLEU_STATS))
    owner, pairs = [], []
    for n, (ref, pred) in enumerate(zip(references, predictions)):
        for r in _refs_list(ref):
            owner.append(n)
            pairs.append((r, pred.strip()))
    for n, c in zip(owner, structure_counts(pairs, lang, grammar)):
        rows[n, 20:24] += c
    for n, (ref, pred) in enumerate(zip(references, predictions)):
        refs = _refs_list(ref)
        hyp = pred.strip()
        tok_refs, tok_hyp = [r.split() for r in refs], hyp.split()
        weighted_refs = [[t, {tok: 1 if tok in kw else 0.2 for tok in t}] for t in tok_refs]
        for i in range(1, 5):
            rows[n, i - 1], rows[n, 3 + i] = _cb_bleu.modified_precision(tok_refs, tok_hyp, i)
            rows[n, 9 + i], rows[n, 13 + i] = _cb_weighted.modified_recall(weighted_refs, tok_hyp, i)
        rows[n, 8] = rows[n, 18] = len(tok_hyp)
        rows[n, 9] = _cb_bleu.closest_ref_length(tok_refs, len(tok_hyp))
        # the official weighted corpus BLEU measures each [tokens, weights] pair, so its "reference
        # length" is 2 (a quirk of weighted_ngram_match.py, kept: compute() and the stats must agree)
        rows[n, 19] = _cb_weighted.closest_ref_length(weighted_refs, len(tok_hyp))
    return rows


def _nltk_bleu_from_sums(num: Sequence[float], den: Sequence[float], hyp_len: float, ref_len: float) -> float:
    """The package's (NLTK) corpus_bleu from summed counts: method1 smoothing (0 -> 0.1), uniform weights."""
    import math

    if num[0] == 0:
        return 0.0
    bp = _cb_bleu.brevity_penalty(ref_len, hyp_len)
    logs = [0.25 * math.log((n if n != 0 else 0.1) / d) for n, d in zip(num, den)]
    return bp * math.exp(math.fsum(logs))


def codebleu_from_sums(s: Sequence[float], weights: tuple[float, float, float, float] = (0.25,) * 4) -> dict[str, float]:
    ngram = _nltk_bleu_from_sums(s[0:4], s[4:8], s[8], s[9])
    weighted = _nltk_bleu_from_sums(s[10:14], s[14:18], s[18], s[19])
    syntax = s[20] / s[21]
    dataflow = s[22] / s[23] if s[23] else 0.0
    a, b, g, t = weights
    return {"codebleu": a * ngram + b * weighted + g * syntax + t * dataflow, "ngram_match": ngram,
            "weighted_ngram_match": weighted, "syntax_match": syntax, "dataflow_match": dataflow}
