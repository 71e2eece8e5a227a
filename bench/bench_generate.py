"""Batched generation (harness.predict.generate) against one `model.generate` call per example.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_generate.py [--prompts 64] [--batch 32] [--new 32]

The ~30M-parameter Llama-architecture model of bench_train.py (random weights), the first
`--prompts` test prompts of `--task` (concode: a Javadoc with its class context -> a method) as
the harness encodes them for a decoder, greedy decoding of up to `--new` tokens (concode's target
length is 150) with the KV cache, stopping at EOS. Both sides run twice, alternating;
prints prompts per second, the speed-up, and how many outputs are token-for-token identical
(left padding changes float rounding, so a few may differ after a near tie).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from bench_train import MODEL  # noqa: E402

TASK = "concode"


def setup(prompts: int, task_name: str):
    from hydra.utils import instantiate

    from conftest import compose
    from harness.env import pick_device
    from harness.features import build_features
    from harness.models import load_model

    cfg = compose([*MODEL, "method=full", f"task={task_name}"])
    task = instantiate(cfg.task, _convert_="all")
    data = task.load_data(task.data_plan())
    model, tok = load_model(cfg.model, cfg.method, "causal_lm", pick_device("cpu"))
    features = build_features(task, data.splits["test"].select(range(prompts)), data.plan.identity, tok, "decoder",
                              min(task.max_source_length, cfg.model.max_length), for_training=False, label="prompts")
    return model.eval(), tok, [list(f["input_ids"]) for f in features]


def batched(model, tok, prompts, batch: int, new: int) -> list[list[int]]:
    from harness.env import pick_device
    from harness.predict import generate

    return generate(model, prompts, tok.pad_token_id, batch, pick_device("cpu"), True, max_new_tokens=new,
                    do_sample=False, eos_token_id=tok.eos_token_id)


@torch.no_grad()
def one_by_one(model, tok, prompts, new: int) -> list[list[int]]:
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                             use_cache=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        out.append(seq[0, ids.shape[1]:].tolist())
    return out


def _strip(seq: list[int], pad: int) -> list[int]:
    return [t for t in seq if t != pad]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--task", default=TASK)
    args = parser.parse_args()
    model, tok, prompts = setup(args.prompts, args.task)
    times: dict[str, list[float]] = {"batched": [], "one by one": []}
    outputs = {}
    for k in range(2):
        for name in (["batched", "one by one"] if k % 2 == 0 else ["one by one", "batched"]):
            start = time.perf_counter()
            outputs[name] = (batched(model, tok, prompts, args.batch, args.new) if name == "batched"
                             else one_by_one(model, tok, prompts, args.new))
            times[name].append(time.perf_counter() - start)
            print(f"round {k} {name:>10}: {len(prompts) / times[name][-1]:7.2f} prompts/s", flush=True)
    best = {n: statistics.median(t) for n, t in times.items()}
    same = sum(_strip(a, tok.pad_token_id) == _strip(b, tok.pad_token_id)
               for a, b in zip(outputs["batched"], outputs["one by one"]))
    print(json.dumps({"cpus": torch.get_num_threads(), "prompts": len(prompts), "batch": args.batch,
                      "new_tokens": args.new, "seconds": best,
                      "speedup": best["one by one"] / best["batched"], "identical_outputs": same}, indent=2))


if __name__ == "__main__":
    main()
