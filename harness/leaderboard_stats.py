"""The statistics of a leaderboard column (one task): intervals, tests against the best, flags.

- Interval of an entry: a percentile bootstrap over the test examples (1,000 resamples): each
  resample draws the same examples for every seed of the entry, scores each seed on them and
  averages the seeds. Every resample is a value the metric can take, so the interval never leaves
  the metric's range, and it holds with 1 seed as with 10. Without per-example results (prediction
  files not readable): the runs' own bootstrap intervals averaged (1 seed: that run's).
- Test against the best: over every seed the two entries share (same test data), paired on the
  test examples: McNemar's exact test on the discordant pairs of all shared seeds for accuracy-type
  keys, else a paired bootstrap of the seed-averaged difference. Holm's correction over the
  comparisons of the column; `tied_with_best` = adjusted p >= 0.05. A comparison that cannot be
  made says why (`untestable_reason`), never a blank.
- Degenerate: an entry whose predictions are >= 95% one class, or whose interval does not clear
  the task's naive baseline.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ALPHA = 0.05
RESAMPLES = 1000


@dataclass
class Entry:
    """One (model, method) x task cell of the table, pooled over seeds."""
    records: list[dict]
    mean: float = 0.0
    low: float = 0.0
    high: float = 0.0
    interval: str = ""
    seed_std: float = 0.0
    best: bool = False
    p_value: float | None = None
    p_adjusted: float | None = None
    tied_with_best: bool = False
    untestable_reason: str | None = None
    degenerate: str | None = None
    comparable: bool = False
    cost: dict[str, float] = field(default_factory=dict)
    link: str = ""  # the entry's first seed's run (MLflow UI link or run id)

    @property
    def seeds(self) -> int:
        return len(self.records)


def predictions_of(record: dict) -> tuple[list, list] | None:
    """(references, predictions) of a run, read back from its official-format files."""
    files = record.get("files") or {}
    if not files.get("gold") or not files.get("predictions"):
        return None
    base = Path(record.get("_predictions") or Path(record["_dir"]) / "predictions")  # a multi-task member: its subfolder
    gold, pred = (base / Path(files[k]).name for k in ("gold", "predictions"))
    if not (gold.is_file() and pred.is_file()):
        return None
    refs, preds = _read(record["metric"], str(gold), str(pred))
    keep = record.get("_keep_rows")  # --clean-only: the test rows without a near-duplicate
    return (refs, preds) if keep is None else ([refs[k] for k in keep], [preds[k] for k in keep])


@functools.lru_cache(maxsize=4096)
def _read(metric: str, gold: str, pred: str) -> tuple[list, list]:
    from metrics.registry import spec

    return spec(metric).read(gold, pred)


@functools.lru_cache(maxsize=4096)
def _stats(metric: str, gold: str, pred: str, kept: str | None):
    """Per-example statistics of a run; kept (a cache file of an MLflow run, whose files never
    change) holds its rows once computed, so a cached board does not re-tokenise them."""
    from metrics.bootstrap import sufficient_stats

    refs, preds = _read(metric, gold, pred)
    if kept and Path(kept).is_file():
        shape = sufficient_stats(metric, refs[:1], preds[:1])  # the finalizers, from one example
        rows = np.load(kept)
        if rows.shape[1] == shape.rows.shape[1] and rows.shape[0] == len(refs):
            shape.rows = rows
            return shape
    found = sufficient_stats(metric, refs, preds)
    if kept:
        np.save(kept, found.rows)
    return found


def stats_of(record: dict):
    files = record.get("files") or {}
    if predictions_of(record) is None:
        return None
    base = Path(record.get("_predictions") or Path(record["_dir"]) / "predictions")  # a multi-task member: its subfolder
    kept = str(Path(record["_cache"]) / f"stats-{record['metric']}.npy") if record.get("_cache") else None
    found = _stats(record["metric"], *(str(base / Path(files[k]).name) for k in ("gold", "predictions")), kept)
    keep = record.get("_keep_rows")
    return found if keep is None else replace(found, rows=found.rows[np.asarray(keep, dtype=int)])


def _seed_average(stats: list, key: str, seed: int) -> np.ndarray:
    """Per resample: the mean over seeds of each seed's score on the resampled examples (the same
    resampled examples for every seed: the resampler is seeded alike)."""
    from metrics.bootstrap import _resample_sums

    return np.mean([s.scores(_resample_sums(s.rows, RESAMPLES, seed), key) for s in stats], axis=0)


def set_interval(entry: Entry, key: str, bounds: tuple[float, float]) -> None:
    values = [r["primary_value"] for r in entry.records]
    entry.mean = float(np.mean(values))
    entry.seed_std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    stats = [stats_of(r) for r in entry.records]
    if all(s is not None for s in stats) and len({s.rows.shape[0] for s in stats}) == 1:
        scores = _seed_average(stats, key, seed=0)
        entry.low, entry.high = (float(np.quantile(scores, q)) for q in (ALPHA / 2, 1 - ALPHA / 2))
        entry.interval = f"bootstrap over test examples, {len(values)} seed(s) averaged"
    else:
        cis = [r.get("confidence_intervals", {}).get(key) or [v, v] for r, v in zip(entry.records, values)]
        entry.low = float(np.mean([c[0] for c in cis]))
        entry.high = float(np.mean([c[1] for c in cis]))
        entry.interval = "the runs' bootstrap intervals averaged (no per-example results)"
    entry.low, entry.high = max(entry.low, bounds[0]), min(entry.high, bounds[1])


def _untestable(best: Entry, other: Entry) -> tuple[str | None, list[tuple]]:
    """Why two entries cannot be compared, or the (stats_best, stats_other) pairs of shared seeds."""
    seeds = {r["seed"]: r for r in other.records}
    shared = [(r, seeds[r["seed"]]) for r in best.records if r["seed"] in seeds]
    if not shared:
        return "n/a: no seed in common with the best", []
    pairs = []
    for a, b in shared:
        if a.get("metric") != b.get("metric"):
            return "n/a: a different metric", []
        if a.get("data_digest") != b.get("data_digest"):
            return "n/a: different test data", []
        pa, pb = predictions_of(a), predictions_of(b)
        if pa is None or pb is None:
            return "n/a: prediction files missing", []
        if pa[0] != pb[0]:
            return "n/a: different test data", []
        pairs.append((stats_of(a), stats_of(b)))
    return None, pairs


def paired_p(pairs: list[tuple], key: str) -> float:
    """Two-sided p-value of "no difference" over the shared seeds (see the module docstring)."""
    from scipy.stats import binomtest

    column = pairs[0][0].correct_column.get(key)
    if column is not None:
        a_only = sum(int(((sa.rows[:, column] > .5) & ~(sb.rows[:, column] > .5)).sum()) for sa, sb in pairs)
        b_only = sum(int((~(sa.rows[:, column] > .5) & (sb.rows[:, column] > .5)).sum()) for sa, sb in pairs)
        return 1.0 if a_only + b_only == 0 else float(binomtest(b_only, a_only + b_only, 0.5).pvalue)
    delta = _seed_average([b for _, b in pairs], key, seed=1) - _seed_average([a for a, _ in pairs], key, seed=1)
    return min(1.0, 2 * min(float(np.mean(delta <= 0)), float(np.mean(delta >= 0))))


def holm(p_values: dict) -> dict:
    """Holm's step-down adjusted p-values."""
    order = sorted(p_values, key=p_values.get)
    out, running, m = {}, 0.0, len(order)
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[k]))
        out[k] = running
    return out


def compare_with_best(column: dict, key: str) -> None:
    top = max(e.mean for e in column.values())
    for entry in column.values():
        entry.best = entry.mean == top  # exact ties share the mark
    best = column[min(k for k, e in column.items() if e.best)]
    raw = {}
    for row, entry in column.items():
        if entry.best:
            continue
        entry.untestable_reason, pairs = _untestable(best, entry)
        if pairs:
            raw[row] = entry.p_value = paired_p(pairs, key)
    for row, p in holm(raw).items():
        column[row].p_adjusted = p
        column[row].tied_with_best = p >= ALPHA


def degenerate(entry: Entry, naive: float | None, naive_name: str | None) -> str | None:
    """Why an entry's score says nothing about its method, or None."""
    for r in entry.records:
        counts = r.get("prediction_distribution") or {}
        total = sum(counts.values())
        if total:
            label, top = max(counts.items(), key=lambda kv: kv[1])
            if top / total >= 0.95:
                return f"degenerate: {100 * top / total:.0f}% of predictions are {label!r} (seed {r['seed']})"
    if naive is not None and entry.low <= naive:
        return f"degenerate: not above the naive baseline ({naive_name}: {naive:.4f}) by more than its interval"
    return None
