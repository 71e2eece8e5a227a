"""python -m metrics TASK --gold FILE --predictions FILE [--lang LANG]

Reads the official CodeXGLUE files of TASK, prints one JSON object with the scores at the official
rounding (and an "unrounded" object). Malformed or missing predictions: argparse-style error, exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import TASKS, compute, round_official
from .formats import FormatError
from .registry import spec


def load(task: str, gold: str, pred: str) -> tuple[list, list]:
    """In-memory (references, predictions) of compute() from the official files (the metric's
    reader, metrics/registry.py)."""
    return spec(task).read(gold, pred)


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
