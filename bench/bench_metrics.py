"""Time the metrics at full test-set size, side by side with the codebleu package / a naive baseline.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_metrics.py [--pairs 10000] [--codebleu-pairs 1000]

Data: CodeXGLUE code_refinement test pools (shared/codexglue/pools): reference = fixed, hypothesis =
buggy (the naive-copy baseline), cycled to the requested size. MRR: random embeddings, 19,210 codes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metrics import compute  # noqa: E402
from metrics.bootstrap import confidence_interval  # noqa: E402
from metrics.retrieval import gold_ranks, mrr, rank_by_similarity  # noqa: E402

POOLS = [ROOT.parent / "shared" / "codexglue" / "pools", Path("/work/shared/codexglue/pools")]


def pairs(n: int) -> tuple[list[str], list[str]]:
    pool = next(p for p in POOLS if p.exists())
    rows = []
    for size in ("small", "medium"):
        with open(pool / "code_refinement" / size / "test.jsonl", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    rows = [rows[i % len(rows)] for i in range(n)]
    return [r["fixed"].strip() for r in rows], [r["buggy"].strip() for r in rows]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--codebleu-pairs", type=int, default=1_000)
    ap.add_argument("--pool", type=int, default=19_210)
    ap.add_argument("--resamples", type=int, default=1_000)
    args = ap.parse_args()
    from codebleu import bleu as cb_bleu
    from codebleu import calc_codebleu

    refs, hyps = pairs(args.pairs)
    report = []

    t_ours, ours = timed(lambda: compute("code_refinement", refs, hyps)["bleu"])
    t_pkg, pkg = timed(lambda: 100 * cb_bleu.corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps]))
    report.append((f"corpus BLEU-4, {args.pairs} pairs", t_ours, f"{ours:.2f}",
                   t_pkg, f"{pkg:.2f} (codebleu ngram_match: NLTK BLEU, no +1 smoothing, closest ref)"))

    rng = np.random.default_rng(0)
    q = rng.normal(size=(args.pool, 768)).astype(np.float32)
    c = (q + rng.normal(scale=4.0, size=q.shape)).astype(np.float32)
    gold = np.arange(args.pool)
    t_rank, ranked = timed(lambda: rank_by_similarity(q, c, top_k=100, chunk_size=1024))
    t_mrr, score = timed(lambda: mrr(gold.tolist(), ranked.tolist()))
    t_exact, ranks = timed(lambda: gold_ranks(q, c, gold, chunk_size=1024))
    report.append((f"MRR, {args.pool} queries x {args.pool} codes (768-d): rank top-100 + score", t_rank + t_mrr,
                   f"{score:.4f}", t_exact, f"gold_ranks (exact rank, no cut-off): MRR {np.mean(1 / ranks):.4f}"))

    n = args.codebleu_pairs
    from metrics.code_bleu import code_bleu
    from metrics.legacy_grammars import build

    build()  # the official-era grammar library (a no-op once `make install` has built it)
    t_ours, ours = timed(lambda: compute("code_refinement", refs[:n], hyps[:n], lang="java")["codebleu"])
    t_pkg, pkg = timed(lambda: calc_codebleu(refs[:n], hyps[:n], "java")["codebleu"])
    report.append((f"CodeBLEU (java), {n} pairs, official-era grammars", t_ours, f"{ours:.4f}", t_pkg,
                   f"{pkg:.4f} (calc_codebleu)"))
    t_mod, mod = timed(lambda: code_bleu(refs[:n], hyps[:n], "java", grammar="modern")["codebleu"])
    report.append((f"CodeBLEU (java), {n} pairs, grammar='modern' (pinned 0.21 wheels)", t_mod, f"{mod:.4f}", t_pkg,
                   f"{pkg:.4f} (calc_codebleu)"))

    t_ci, ci = timed(lambda: confidence_interval("code_refinement", refs, hyps, n_resamples=args.resamples))
    k = 5
    t_naive, _ = timed(lambda: [cb_bleu.corpus_bleu([[refs[i].split()] for i in idx], [hyps[i].split() for i in idx])
                                for idx in np.random.default_rng(0).integers(0, len(refs), size=(k, len(refs)))])
    report.append((f"bootstrap 95% CI of corpus BLEU, {args.pairs} pairs x {args.resamples} resamples", t_ci,
                   f"[{ci['bleu'][0]:.2f}, {ci['bleu'][1]:.2f}]", t_naive / k * args.resamples,
                   f"recomputing codebleu corpus_bleu per resample (extrapolated from {k})"))

    print(f"{'what':<80} {'ours (s)':>9}  value | other (s)  other")
    for what, t1, v1, t2, v2 in report:
        print(f"{what:<80} {t1:9.2f}  {v1} | {t2:9.2f}  {v2}")


if __name__ == "__main__":
    main()
