"""The official CodeXGLUE files of each metric: readers (gold file, predictions file) -> compute()'s
inputs, and writers (gold, predictions, each example's official key, references, predictions).
metrics/registry.py names one of each per metric."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from . import formats


# ---- official files: readers ---------------------------------------------------------------------------
def _missing(path: str, what: str, key: Any) -> formats.FormatError:
    return formats.FormatError(f"{path}: missing prediction for {what} {key!r} (every gold key needs one)")


def align(gold: dict, pred: dict, path: str, what: str) -> tuple[list, list]:
    for key in gold:
        if key not in pred:
            raise _missing(path, what, key)
    return [gold[k] for k in gold], [pred[k] for k in gold]


def _same_count(gold: list, pred: list, gpath: str, ppath: str) -> None:
    if len(gold) != len(pred):
        raise formats.FormatError(f"{ppath}: {len(pred)} lines, but {gpath} has {len(gold)}; "
                                  "expected one prediction per gold entry")


def read_lines_pair(gold_texts: Callable[[str], list[str]]) -> Callable[[str, str], tuple[list, list]]:
    def read(gold: str, pred: str) -> tuple[list, list]:
        g, p = gold_texts(gold), formats.read_text_lines(pred)
        _same_count(g, p, gold, pred)
        return g, p
    return read


def read_tokens(gold: str, pred: str) -> tuple[list, list]:
    g, p = formats.read_text_lines(gold), formats.read_text_lines(pred)
    _same_count(g, p, gold, pred)
    for n, (a, b) in enumerate(zip(g, p), 1):
        if len(a.split()) != len(b.split()):
            raise formats.FormatError(f"{pred}:{n}: {len(b.split())} tokens, expected {len(a.split())} (as gold line {n})")
    return [x.split() for x in g], [x.split() for x in p]


def read_poj104(gold: str, pred: str) -> tuple[list, list]:
    answers, ranked = formats.read_poj104_gold(gold), formats.read_ranked(pred, "index")
    ids = list(answers)
    pos = {i: n for n, i in enumerate(ids)}
    label: dict[str, int] = {}
    for i, others in answers.items():  # an id and its answers share a class
        if i not in label:
            cls = len(set(label.values()))
            for j in [i, *others]:
                label.setdefault(j, cls)
    rankings = []
    for i in ids:
        if i not in ranked:
            raise _missing(pred, "index", i)
        r = [str(x) for x in ranked[i]]
        if len(r) != len(answers[i]):
            raise formats.FormatError(f"{pred}: index {i!r} has {len(r)} answers, expected exactly R = {len(answers[i])}")
        rankings.append([pos.get(x, -1) for x in r])
    return [label[i] for i in ids], rankings


def read_advtest(gold: str, pred: str) -> tuple[list, list]:
    golds = {str(o["url"]): o["idx"] for o in formats.read_jsonl(gold, ("url", "idx"))}
    return align(golds, formats.read_ranked(pred, "url"), pred, "url")


def read_code_to_text(gold: str, pred: str) -> tuple[list, list]:
    refs: dict[str, list[str]] = {}
    for rid, text in formats.read_id_text(gold, gold=True):
        refs.setdefault(rid, []).append(text)
    preds = dict(formats.read_id_text(pred, gold=False))
    return list(refs.values()), [preds.get(rid) for rid in refs]


def jsonl_field(key: str) -> Callable[[str], list[str]]:
    return lambda path: [str(o[key]) for o in formats.read_jsonl(path, (key,))]


# ---- official files: writers (keys: the official id of each example) ------------------------------------
def _jsonl(path: Path, objects) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for o in objects:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")


def write_bcb(gold, pred, keys, refs, preds) -> None:
    formats.write_pair_labels(gold, ((a, b, y) for (a, b), y in zip(keys, refs)))
    formats.write_pair_labels(pred, ((a, b, y) for (a, b), y in zip(keys, preds)))


def write_devign(gold, pred, keys, refs, preds) -> None:
    _jsonl(gold, ({"idx": k, "target": int(y)} for k, y in zip(keys, refs)))  # the official gold: test JSONL
    formats.write_idx_labels(pred, zip(keys, preds))


def write_idx_labels(gold, pred, keys, refs, preds) -> None:
    formats.write_idx_labels(gold, zip(keys, refs))
    formats.write_idx_labels(pred, zip(keys, preds))


def write_poj104(gold, pred, keys, refs, preds) -> None:
    _jsonl(gold, ({"index": k, "label": str(y)} for k, y in zip(keys, refs)))
    formats.write_ranked(pred, ((k, [keys[j] for j in ranked]) for k, ranked in zip(keys, preds)), "index")


def write_advtest(gold, pred, keys, refs, preds) -> None:
    """keys: (url, idx) of each query; a prediction ranks positions in the pool."""
    _jsonl(gold, ({"url": u, "idx": i} for u, i in keys))
    formats.write_ranked(pred, ((u, [keys[j][1] for j in ranked]) for (u, _), ranked in zip(keys, preds)), "url")


def write_lines(gold, pred, keys, refs, preds) -> None:
    formats.write_lines(gold, refs)
    formats.write_lines(pred, preds)


def write_jsonl_gold(key: str) -> Callable:
    def write(gold, pred, keys, refs, preds) -> None:
        _jsonl(gold, ({"id": k, key: r} for k, r in zip(keys, refs)))
        formats.write_lines(pred, preds)
    return write


def write_id_text(gold, pred, keys, refs, preds) -> None:
    formats.write_id_text(gold, zip(keys, refs))
    formats.write_id_text(pred, zip(keys, preds))


def write_tokens(gold, pred, keys, refs, preds) -> None:
    formats.write_token_lines(gold, refs)
    formats.write_token_lines(pred, preds)
