"""A streamed corpus of at least 50M tokens through the data pipeline of one cell: stream, filter,
deduplicate, tokenise, pack, then a few training steps.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_stream.py [--tokens 50000000] [--out runs/bench/stream]

The corpus is this machine's own Python code in PolyCoder's layout (task=code_corpus_repos): a folder
whose "repositories" are links to the standard library and to the virtualenv's site-packages, read
as a stream (one file at a time, sorted). The budget counts the tokens of model=tiny_llama's byte-level
BPE tokenizer. Prints the stages' seconds and tokens per second, the resident memory at every shard
of the stream (it must stay flat: only the deduplication index grows, by a measured number of bytes
per kept document) and the peak, sampled every 0.2 s.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import sysconfig
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class Sampler(threading.Thread):
    """The process's resident memory every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.process, self.samples, self.running = psutil.Process(), [], True

    def run(self):
        start = time.perf_counter()
        while self.running:
            self.samples.append((time.perf_counter() - start, self.process.memory_info().rss))
            time.sleep(0.2)


def corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in (("stdlib", sysconfig.get_paths()["stdlib"]), ("site-packages", sysconfig.get_paths()["purelib"])):
        link = folder / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=50_000_000)
    parser.add_argument("--out", default="runs/bench/stream")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out / "cache", ignore_errors=True)
    import os

    os.environ["HARNESS_CACHE_DIR"] = str(out / "cache")
    import hydra.utils

    from conftest import compose
    from harness.env import pick_device
    from harness.features import build_features
    from harness.models import load_model
    from harness.train import train

    cfg = compose(["task=code_corpus_repos", f"task.data_dir={corpus(out / 'repos')}", "task.languages=[Python]",
                   f"task.max_train_tokens={args.tokens}", "task.shard_documents=1000",
                   "task.held_out={validation: 0.005, test: 0.01, max_documents: 8}", "model=tiny_llama",
                   "trainer=smoke", f"trainer.max_steps={args.steps}", "trainer.max_train_examples=null"])
    task = hydra.utils.instantiate(cfg.task, _convert_="all")
    device = pick_device("cpu")
    model, tokenizer = load_model(cfg.model, cfg.method, task.head("decoder"), device, task.model_kwargs())
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    data = task.load_data(task.data_plan(None), tokenizer=tokenizer)
    t1, n1 = time.perf_counter(), len(sampler.samples)
    features = build_features(task, data.splits["train"], data.plan.identity, tokenizer, "decoder",
                              min(task.max_source_length, cfg.model.max_length), documents=True, label="train")
    t2, n2 = time.perf_counter(), len(sampler.samples)
    stats = train(model, features, task.collator(tokenizer, "decoder"), cfg.trainer,
                  hydra.utils.instantiate(cfg.method.optimizer), device, 0, loss_fn=task.loss)
    t3 = time.perf_counter()
    sampler.running = False
    record = json.loads(next((out / "cache" / "streams").glob("*/record.json")).read_text())
    tokens = record["train_tokens"]
    memory = [{"documents_seen": s, "train_tokens": t, "rss_mib": round(r / 2**20)} for s, t, r in record["memory"]]
    kept = sum(record["documents_kept"].values())
    print(json.dumps({
        "corpus": "stdlib + site-packages (.py), PolyCoder layout", "budget": args.tokens, "train_tokens": tokens,
        "documents_seen": record["documents_seen"], "documents_kept": record["documents_kept"],
        "dropped": record["dropped"], "blocks": len(features), "block_tokens": min(task.max_source_length, 1024),
        "stream_seconds": round(t1 - t0, 1), "stream_tokens_per_second": round(tokens / (t1 - t0)),
        "pack_seconds": round(t2 - t1, 1), "train_steps": stats.steps if hasattr(stats, "steps") else args.steps,
        "train_seconds": round(t3 - t2, 1), "pipeline_tokens_per_second": round(tokens / (t2 - t0)),
        "rss_at_each_shard": memory, "rss_growth_mib_per_1000_kept_documents": round(
            (record["memory"][-1][2] - record["memory"][0][2]) / 2**20 / max(1, (kept - 1000) / 1000), 1),
        "peak_rss_mib": {stage: round(max(r for _, r in part) / 2**20) for stage, part in (
            ("model loaded + stream", sampler.samples[:n1]), ("pack", sampler.samples[n1:n2]),
            ("train", sampler.samples[n2:]))},
        "dedup_documents": kept,
    }, indent=1))


if __name__ == "__main__":
    main()
