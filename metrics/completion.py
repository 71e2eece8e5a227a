"""Code completion metrics: token accuracy (token level), exact match and edit similarity (line level).

Edit similarity uses rapidfuzz's InDel distance (the same distance python-Levenshtein's ratio uses);
the fuzzywuzzy wrapper (equal -> 100, one empty -> 0, int(round(100 * ratio))) is reproduced by hand
because rapidfuzz.fuzz.ratio returns an unrounded float.
"""
from __future__ import annotations

import re
from typing import Sequence

from rapidfuzz.distance import Indel

SKIPPED_GOLD_TOKENS = frozenset({"<s>", "</s>", "<EOL>", "<pad>"})
_LIT = re.compile(r"<(STR|NUM|CHAR)_LIT:(.*?)>", re.S)


def token_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int]:
    """(correct, counted) for one line; the two token lists must have the same length."""
    if len(gold) != len(pred):
        raise ValueError(f"token count mismatch: gold has {len(gold)} tokens, prediction {len(pred)}")
    correct = total = 0
    for p, g in zip(pred, gold):
        if g not in SKIPPED_GOLD_TOKENS:
            total += 1
            correct += p == g
    return correct, total


def token_accuracy(references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro token accuracy x100 over non-special gold tokens, with the counted total."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} gold lines but {len(predictions)} prediction lines")
    correct = total = 0
    for i, (g, p) in enumerate(zip(references, predictions)):
        try:
            c, t = token_counts(list(g), list(p))
        except ValueError as e:
            raise ValueError(f"line {i + 1}: {e}") from None
        correct += c
        total += t
    if total == 0:
        raise ValueError("no counted gold token: token accuracy undefined")
    return {"token_accuracy": float(correct) / total * 100, "total_tokens": total}


def post_process(code: str) -> str:
    """Literal placeholders of the line-completion evaluator: <NUM_LIT> -> 0, <STR_LIT>/<CHAR_LIT> -> '', <X_LIT:v> -> v."""
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    for kind, value in _LIT.findall(code):
        code = code.replace(f"<{kind}_LIT:{value}>", value)
    return code


def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy.fuzz.ratio with the python-Levenshtein backend: int(round(100 * InDel ratio))."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    lensum = len(a) + len(b)
    ratio = (lensum - Indel.distance(a, b)) / lensum  # same expression as Levenshtein.ratio
    return int(round(100 * ratio))


def line_scores(gold: str, pred: str) -> tuple[float, int]:
    """(exact match 0/1, edit similarity 0-100) of one line, after the official post-processing."""
    p, g = post_process(pred.strip()), post_process(gold)
    return float(p.split() == g.split()), fuzz_ratio(p, g)


def line_completion(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} answers but {len(predictions)} predictions")
    if not references:
        raise ValueError("empty answer set")
    em = 0.0
    edit = 0.0
    for g, p in zip(references, predictions):
        e, s = line_scores(g, p)
        em += e
        edit += s
    total = len(references)
    return {"exact_match": em / total * 100, "edit_sim": edit / total}
