"""BLEU variants of CodeXGLUE.

* corpus_bleu: smoothed corpus BLEU-4 of the TensorFlow NMT compute_bleu (refinement, translation,
  CONCODE). Hand-written on per-example sufficient statistics (clipped matches, possible n-grams,
  lengths), so that a bootstrap resample is a sum; sacrebleu/evaluate do not expose this smoothing.
* smoothed sentence BLEU-4 of the code-to-text evaluator (NIST normalisation, add-one smoothing for
  orders 2-4 only, log-space brevity penalty). Hand-written: no library has this exact variant.
"""
from __future__ import annotations

import math
import re
import sys
import xml.sax.saxutils
from collections import Counter
from typing import Sequence

import numpy as np

MAX_ORDER = 4
# columns of a per-example statistics row: matches[1..4], possible[1..4], ref_len, hyp_len
N_STATS = 2 * MAX_ORDER + 2


def _ngrams(tokens: Sequence[str], max_order: int = MAX_ORDER) -> Counter:
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i:i + n])] += 1
    return counts


def bleu_stats(references: Sequence[Sequence[str]], hypothesis: Sequence[str]) -> list[int]:
    """Sufficient statistics of one segment (references = list of token lists)."""
    merged: Counter = Counter()
    for ref in references:
        merged |= _ngrams(ref)
    overlap = _ngrams(hypothesis) & merged
    row = [0] * N_STATS
    for ngram, count in overlap.items():
        row[len(ngram) - 1] += count
    for n in range(1, MAX_ORDER + 1):
        row[MAX_ORDER + n - 1] = max(len(hypothesis) - n + 1, 0)
    row[-2] = min(len(r) for r in references)
    row[-1] = len(hypothesis)
    return row


def bleu_from_stats(total: Sequence[float], smooth: bool = True) -> float:
    """BLEU (0-1) from summed statistics, as compute_bleu(max_order=4, smooth=True)."""
    matches = total[:MAX_ORDER]
    possible = total[MAX_ORDER:2 * MAX_ORDER]
    ref_len, hyp_len = total[-2], total[-1]
    if smooth:
        precisions = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible)]
    else:
        precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible)]
    if min(precisions) > 0:
        geo_mean = math.exp(sum((1.0 / MAX_ORDER) * math.log(p) for p in precisions))
    else:
        geo_mean = 0.0
    if ref_len == 0:
        raise ValueError("total reference length is 0: BLEU undefined")
    if hyp_len == 0:
        return 0.0  # the official script divides by zero here; the limit of its formula is 0
    ratio = float(hyp_len) / ref_len
    bp = 1.0 if ratio > 1.0 else math.exp(1 - 1.0 / ratio)
    return geo_mean * bp


def bleu_from_stats_many(totals: np.ndarray) -> np.ndarray:
    """bleu_from_stats (smoothed) for each row of (r, N_STATS) summed statistics."""
    totals = np.asarray(totals, dtype=np.float64)
    matches, possible = totals[:, :MAX_ORDER], totals[:, MAX_ORDER:2 * MAX_ORDER]
    ref_len, hyp_len = totals[:, -2], totals[:, -1]
    if (ref_len == 0).any():
        raise ValueError("total reference length is 0: BLEU undefined")
    log_p = (1.0 / MAX_ORDER) * np.log((matches + 1.0) / (possible + 1.0))
    geo_mean = np.exp(np.sum(log_p, axis=1))
    ratio = np.divide(hyp_len, ref_len)
    with np.errstate(divide="ignore"):
        bp = np.where(ratio > 1.0, 1.0, np.exp(1 - 1.0 / np.where(ratio > 0, ratio, 1.0)))
    return np.where(hyp_len == 0, 0.0, geo_mean * bp)


def corpus_stats(references: Sequence, predictions: Sequence[str]) -> np.ndarray:
    """(n, 10) statistics; a reference is a string or a list of strings; whitespace tokens after strip()."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    rows = []
    for ref, hyp in zip(references, predictions):
        refs = [ref] if isinstance(ref, str) else list(ref)
        rows.append(bleu_stats([r.strip().split() for r in refs], hyp.strip().split()))
    return np.asarray(rows, dtype=np.float64).reshape(-1, N_STATS)


def corpus_bleu(references: Sequence, predictions: Sequence[str]) -> float:
    """Smoothed corpus BLEU-4 x100 (unrounded)."""
    stats = corpus_stats(references, predictions)
    total = [int(x) for x in stats.sum(axis=0)] if len(stats) else [0] * N_STATS
    return 100 * bleu_from_stats(total)


# ---------------------------------------------------------------- code-to-text (smooth_bleu)
_NORM1 = [(re.compile("<skipped>"), ""), (re.compile(r"-\n"), ""), (re.compile(r"\n"), " ")]
_NORM2 = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation (apostrophe excluded)
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash preceded by a digit
]


def split_puncts(line: str) -> str:
    return " ".join(re.findall(r"[\w]+|[^\s\w]", line))


def nist_normalize(s: str) -> list[str]:
    """NIST mteval-v11a normalisation, lower-cased, as in the code-to-text evaluator."""
    for pattern, repl in _NORM1:
        s = pattern.sub(repl, s)
    s = xml.sax.saxutils.unescape(s, {"&quot;": '"'})
    s = (" %s " % s).lower()
    for pattern, repl in _NORM2:
        s = pattern.sub(repl, s)
    return s.split()


def _count_ngrams(words: Sequence[str], n: int = MAX_ORDER) -> dict:
    counts: dict = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            g = tuple(words[i:i + k])
            counts[g] = counts.get(g, 0) + 1
    return counts


def smoothed_sentence_bleu(references: Sequence[str], hypothesis: str) -> float:
    """Sentence BLEU-4 (0-1) of the code-to-text evaluator; inputs already lower-cased + split_puncts."""
    refs = [nist_normalize(r) for r in references]
    maxcounts: dict = {}
    for ref in refs:
        for g, c in _count_ngrams(ref).items():
            maxcounts[g] = max(maxcounts.get(g, 0), c)
    hyp = nist_normalize(hypothesis)
    reflen = min(len(r) for r in refs)
    guess = [max(len(hyp) - k + 1, 0) for k in range(1, MAX_ORDER + 1)]
    correct = [0] * MAX_ORDER
    for g, c in _count_ngrams(hyp).items():
        correct[len(g) - 1] += min(maxcounts.get(g, 0), c)
    tiny = sys.float_info.min
    logbleu = 0.0
    for k in range(MAX_ORDER):
        add = 1 if k > 0 else 0
        logbleu += math.log(correct[k] + add + tiny) - math.log(guess[k] + add + tiny)
    logbleu /= float(MAX_ORDER)
    logbleu += min(0, 1 - float(reflen + 1) / (len(hyp) + 1))
    return math.exp(logbleu)


def code_to_text_scores(references: Sequence, predictions: Sequence) -> tuple[list[float], int]:
    """Per-id sentence BLEU (0-1) and the number of skipped ids (prediction None).

    references[i] is a gold string or a list of gold strings for id i; predictions[i] a string or None.
    Both sides are lower-cased, stripped and split into \\w+ runs / punctuation as the evaluator does.
    """
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    scores: list[float] = []
    skipped = 0
    for ref, pred in zip(references, predictions):
        if pred is None:
            skipped += 1
            continue
        refs = [ref] if isinstance(ref, str) else list(ref)
        gold = [split_puncts(r.strip().lower()) for r in refs]
        scores.append(smoothed_sentence_bleu(gold, split_puncts(pred.strip().lower())))
    return scores, skipped


def code_to_text_bleu(references: Sequence, predictions: Sequence) -> dict[str, float]:
    scores, skipped = code_to_text_scores(references, predictions)
    if not scores:
        raise ValueError("no gold id has a prediction: code-to-text BLEU undefined")
    # same float operations as bleuFromMaps: sum of 0-1 scores, then * 100.0 / num
    return {"bleu": sum(scores) * 100.0 / len(scores), "total": len(scores), "skipped": skipped}
