"""Data preparation of a BigCloneBench cell at the full official size, twice: cold, then cached.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_data_scale.py [--out runs/bench/data_scale] [--model minilm]

1. Builds (once) a hub-layout repo `google/code_x_glue_cc_clone_detection_big_clone_bench` under
   OUT/mirror: README.md with `dataset_info` and `configs:`, parquet shards `data/<split>-NNNNN-of-NNNNN`,
   901,028 / 415,416 / 415,416 pairs made of the 908 real functions of the shipped BCB pool (seeded
   random pairs and labels; about 5.5 GB of text, as the real dataset).
2. Runs the data preparation of the default cell (`task=clone_bcb`, `hub_mirror=OUT/mirror`) in a
   fresh process with an empty cache: plan, load (parquet -> Arrow), column checks, the official
   protocol (seeded 10% of train and validation, all of test), tokenising train and test with the
   model's tokenizer into the on-disk feature cache.
3. Runs it again in a new process on the same cache (what a second cell on the same data does).

`--jsonl 0.25` does the same through `task.data_dir` instead: {train,validation,test}.jsonl of a
quarter of the size (225,257 / 103,854 / 103,854 pairs, 1.4 GB), streamed through the row validator
into Arrow; the files are the cell's splits, so all 225,257 train pairs are tokenised.

Prints wall time and peak RSS (the child's ru_maxrss, which counts memory-mapped Arrow pages the
process touched) of each run, and the split and feature sizes, as one JSON line per run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = "google/code_x_glue_cc_clone_detection_big_clone_bench"
SIZES = {"train": 901_028, "validation": 415_416, "test": 415_416}
SHARD = 100_000


def pair_shards(fraction: float = 1.0):
    """(split, shard index, shard count, Arrow table) of BCB-shaped pairs of the shipped functions."""
    import numpy as np
    import pyarrow as pa

    funcs: dict[int, str] = {}
    for line in (ROOT / "tasks/data/clone_detection_big_clone_bench/pool.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        funcs[row["id1"]], funcs[row["id2"]] = row["func1"], row["func2"]
    ids = np.array(sorted(funcs), dtype=np.int32)
    codes = pa.array([funcs[i] for i in ids.tolist()], pa.string())
    rng = np.random.default_rng(0)
    for split, full in SIZES.items():
        n = int(full * fraction)
        shards = (n + SHARD - 1) // SHARD
        for k in range(shards):
            m = min(SHARD, n - k * SHARD)
            a, b = rng.integers(0, len(ids), m), rng.integers(0, len(ids), m)
            yield split, k, shards, pa.table({
                "id": pa.array(np.arange(k * SHARD, k * SHARD + m, dtype=np.int32)), "id1": pa.array(ids[a]),
                "id2": pa.array(ids[b]), "func1": codes.take(pa.array(a)), "func2": codes.take(pa.array(b)),
                "label": pa.array(rng.random(m) < 0.5)})


def build_repo(mirror: Path) -> Path:
    """The hub layout: README.md (dataset_info + configs) and data/<split>-NNNNN-of-NNNNN.parquet."""
    import pyarrow.parquet as pq
    import yaml

    repo = mirror / REPO
    if (repo / "README.md").exists():
        return repo
    splits: dict[str, dict] = {}
    for split, k, shards, table in pair_shards():
        path = repo / "data" / f"{split}-{k:05d}-of-{shards:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        info = splits.setdefault(split, {"name": split, "num_bytes": 0, "num_examples": 0})
        info["num_bytes"] += table.nbytes
        info["num_examples"] += table.num_rows
    features = [{"name": f.name, "dtype": str(f.type)} for f in table.schema]
    card = {"dataset_info": {"features": features, "splits": list(splits.values())},
            "configs": [{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in SIZES]}]}
    (repo / "README.md").write_text(f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n# BCB at full size (bench)\n")
    return repo


def build_jsonl(folder: Path, fraction: float) -> Path:
    """DIR/{train,validation,test}.jsonl in the task's schema, for task.data_dir."""
    if (folder / "test.jsonl").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for split, k, _, table in pair_shards(fraction):
        with open(folder / f"{split}.jsonl", "a" if k else "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row) + "\n" for row in table.to_pylist())
    return folder


def prepare(overrides: list[str], model: str) -> dict:
    """The data steps of harness.run for the default cell, as a fresh process runs them."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import compose
    from hydra.utils import instantiate

    from harness.features import build_features
    from harness.models import load_tokenizer, with_hub_mirror

    cfg = compose([*overrides, f"model={model}"])
    task = instantiate(cfg.task, _convert_="all")
    started = time.perf_counter()
    plan = task.data_plan(cfg.hub_mirror)
    data = task.load_data(plan)
    loaded = time.perf_counter() - started
    tokenizer = load_tokenizer(with_hub_mirror(cfg)[0].model)
    length = min(task.max_source_length, cfg.model.max_length)
    family = cfg.model.family
    train = build_features(task, data.splits["train"], plan.identity, tokenizer, family, length, label="train")
    test = build_features(task, data.splits["test"], plan.identity, tokenizer, family, length,
                          for_training=False, label="test")
    return {"splits": data.record()["splits"], "features": {"train": len(train), "test": len(test)},
            "load_seconds": round(loaded, 1), "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/bench/data_scale")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--jsonl", type=float, default=None, metavar="FRACTION",
                        help="instead of the hub repo: JSONL files of this fraction of the full size, "
                             "read through task.data_dir (0.25: 225,257 / 103,854 / 103,854 pairs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    data = out / f"jsonl-{args.jsonl}" if args.jsonl else out / "mirror"
    overrides = [f"task.data_dir={data}"] if args.jsonl else [f"hub_mirror={data}"]
    if args.child:
        print(json.dumps(prepare(overrides, args.model)), flush=True)
        return
    started = time.perf_counter()
    build_jsonl(data, args.jsonl) if args.jsonl else build_repo(data)
    print(f"data ready in {time.perf_counter() - started:.0f} s: {data}", flush=True)
    cache = out / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for run in ("first (cold cache)", "second (cached)"):
        t0 = time.perf_counter()
        child = [sys.executable, __file__, "--child", "--out", str(out), "--model", args.model]
        proc = subprocess.run(child + (["--jsonl", str(args.jsonl)] if args.jsonl else []),
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{run} failed:\n{proc.stderr[-4000:]}")
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        figures["process_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({"run": run, "cpus": os.cpu_count(), **figures}), flush=True)


if __name__ == "__main__":
    main()
