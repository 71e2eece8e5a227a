"""python -m metrics TASK --gold FILE --predictions FILE [--lang LANG]

Reads the official CodeXGLUE files of TASK, prints one JSON object with the scores at the official
rounding (and an "unrounded" object). Malformed or missing predictions: argparse-style error, exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import TASKS, compute, round_official
from .formats import (FormatError, read_devign_gold, read_id_text, read_idx_labels, read_jsonl,
                      read_pair_labels, read_poj104_gold, read_ranked, read_text_lines)


def _missing(path: str, what: str, key: Any) -> FormatError:
    return FormatError(f"{path}: missing prediction for {what} {key!r} (every gold key needs one)")


def _align(gold: dict, pred: dict, path: str, what: str) -> tuple[list, list]:
    for key in gold:
        if key not in pred:
            raise _missing(path, what, key)
    return [gold[k] for k in gold], [pred[k] for k in gold]


def _same_count(gold: list, pred: list, gpath: str, ppath: str, unit: str = "lines") -> None:
    if len(gold) != len(pred):
        raise FormatError(f"{ppath}: {len(pred)} {unit}, but {gpath} has {len(gold)}; expected one prediction per gold entry")


def load(task: str, gold: str, pred: str) -> tuple[list, list]:
    """In-memory (references, predictions) of compute() from the official files."""
    if task == "clone_detection_big_clone_bench":
        g, p = read_pair_labels(gold), read_pair_labels(pred)
        return _align(g, p, pred, "pair")
    if task == "nl_code_search_webquery":
        return _align(read_idx_labels(gold, "\t"), read_idx_labels(pred, "\t"), pred, "idx")
    if task == "defect_detection":
        return _align(read_devign_gold(gold), read_idx_labels(pred), pred, "idx")
    if task == "clone_detection_poj104":
        answers, ranked = read_poj104_gold(gold), read_ranked(pred, "index")
        ids = list(answers)
        pos = {i: n for n, i in enumerate(ids)}
        labels = _labels_from_answers(answers)
        rankings = []
        for i in ids:
            if i not in ranked:
                raise _missing(pred, "index", i)
            r = [str(x) for x in ranked[i]]
            if len(r) != len(answers[i]):
                raise FormatError(f"{pred}: index {i!r} has {len(r)} answers, expected exactly R = {len(answers[i])}")
            rankings.append([pos.get(x, -1) for x in r])
        return labels, rankings
    if task == "nl_code_search_adv":
        golds = {str(o["url"]): o["idx"] for o in read_jsonl(gold, ("url", "idx"))}
        return _align(golds, read_ranked(pred, "url"), pred, "url")
    if task == "code_completion_token":
        g, p = read_text_lines(gold), read_text_lines(pred)
        _same_count(g, p, gold, pred)
        for n, (a, b) in enumerate(zip(g, p), 1):
            if len(a.split()) != len(b.split()):
                raise FormatError(f"{pred}:{n}: {len(b.split())} tokens, expected {len(a.split())} (as gold line {n})")
        return [x.split() for x in g], [x.split() for x in p]
    if task == "code_completion_line":
        g = [str(o["gt"]) for o in read_jsonl(gold, ("gt",))]
        p = read_text_lines(pred)
        _same_count(g, p, gold, pred)
        return g, p
    if task in ("code_refinement", "code_to_code_trans"):
        g, p = read_text_lines(gold), read_text_lines(pred)
        _same_count(g, p, gold, pred)
        return g, p
    if task == "text_to_code":
        g = [str(o["code"]) for o in read_jsonl(gold, ("code",))]
        p = read_text_lines(pred)
        _same_count(g, p, gold, pred)
        return g, p
    if task == "code_to_text":
        refs: dict[str, list[str]] = {}
        for rid, text in read_id_text(gold, gold=True):
            refs.setdefault(rid, []).append(text)
        preds = dict(read_id_text(pred, gold=False))
        return list(refs.values()), [preds.get(rid) for rid in refs]
    raise ValueError(task)


def _labels_from_answers(answers: dict[str, list[str]]) -> list[int]:
    """Group ids into classes (an id and its answers share a class) -> class label per id."""
    label: dict[str, int] = {}
    for i, others in answers.items():
        if i not in label:
            cls = len(set(label.values()))
            for j in [i, *others]:
                label.setdefault(j, cls)
    return [label[i] for i in answers]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metrics", description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=TASKS)
    ap.add_argument("--gold", required=True, help="official gold file (test JSONL for POJ-104, Devign, AdvTest)")
    ap.add_argument("--predictions", required=True, help="predictions in the official format")
    ap.add_argument("--lang", help="CodeBLEU language (generation tasks): java, c_sharp, python, ...")
    args = ap.parse_args(argv)
    try:
        refs, preds = load(args.task, args.gold, args.predictions)
        kwargs = {"lang": args.lang} if args.lang else {}
        scores = compute(args.task, refs, preds, **kwargs)
    except (FormatError, ValueError, KeyError) as e:
        ap.error(str(e))
    out = dict(round_official(args.task, scores))
    out["unrounded"] = scores
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
