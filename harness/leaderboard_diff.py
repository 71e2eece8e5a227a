"""`python -m harness.leaderboard --diff RUN_A RUN_B`: where two runs differ, example by example.

Each run is an MLflow run id (its result.json and prediction files are fetched once into the
leaderboard cache) or a run directory holding result.json. Both must have scored the same test
examples. The per-example score is the metric's first per-example column (metrics/registry.py:
correctness for classification, exact match for generation, AP@R for POJ-104, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.leaderboard_stats import predictions_of


def _record(run: str, uri: str, cache: Path) -> dict:
    path = Path(run)
    if (path / "result.json").is_file():
        record = json.loads((path / "result.json").read_text())
        record["_dir"] = str(path)
        return record
    from harness.leaderboard import fetch_run

    record = fetch_run(run, cache, uri)
    if record is None:
        raise SystemExit(f"leaderboard --diff: {run} is neither a run directory with result.json nor an "
                         f"MLflow run with a result.json artifact at {uri}")
    return record


def _short(value, width: int = 70) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def diff(run_a: str, run_b: str, uri: str, cache: Path, limit: int = 20) -> str:
    from metrics.registry import per_example, spec

    a, b = _record(run_a, uri, cache), _record(run_b, uri, cache)
    pa, pb = predictions_of(a), predictions_of(b)
    if pa is None or pb is None:
        raise SystemExit("leaderboard --diff: a run has no prediction files")
    if a["metric"] != b["metric"] or pa[0] != pb[0]:
        raise SystemExit("leaderboard --diff: the two runs did not score the same test examples")
    name = next(iter(spec(a["metric"]).examples))
    sa, sb = per_example(a["metric"], *pa)[name], per_example(b["metric"], *pb)[name]
    better_a = [i for i, (x, y) in enumerate(zip(sa, sb)) if x > y]
    better_b = [i for i, (x, y) in enumerate(zip(sa, sb)) if y > x]
    label = lambda r: f"{r['task']}/{r['model']}/{r['method']}/seed{r['seed']}"  # noqa: E731
    lines = [f"A = {label(a)} ({run_a})", f"B = {label(b)} ({run_b})",
             f"{len(sa)} test examples, per-example {name}: A better on {len(better_a)}, B better on "
             f"{len(better_b)}, equal on {len(sa) - len(better_a) - len(better_b)}"]
    for title, idx in (("A right / better, B not", better_a), ("B right / better, A not", better_b)):
        lines.append(f"\n{title} (first {min(limit, len(idx))} of {len(idx)}):")
        for i in idx[:limit]:
            lines.append(f"  #{i}  {name}: A {sa[i]:g}  B {sb[i]:g}\n     gold: {_short(pa[0][i])}\n"
                         f"     A:    {_short(pa[1][i])}\n     B:    {_short(pb[1][i])}")
    return "\n".join(lines) + "\n"
