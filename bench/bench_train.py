"""Training throughput of a harness cell against a hand-written PyTorch + PEFT loop, side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_train.py [--rows 128] [--rounds 2]

The same ~30M-parameter Llama-architecture model (random weights, built once from tiny_llama's
config at hidden 512, 8 layers), the same first `--rows` translation_java_cs training rows
(Java -> C#, tokenised by the harness), batch size 16, LoRA r=8 on q_proj/v_proj, AdamW at 1e-3
with the linear schedule, one epoch. Three variants, their order alternating round by round:

- hand: a plain loop over a seeded random order, padding each batch to its longest, the model's
  own loss (what one writes with PyTorch, transformers and PEFT alone);
- harness, grouping off: a harness cell (`trainer.group_by_length=false`);
- harness, grouping on: a harness cell with its default length-grouped batches.

Prints non-pad training tokens per second (each variant trains on exactly the same tokens), the
ratios against the hand loop, and the model-FLOPs utilisation against the fp32 matmul peak
measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
MODEL = ["model=tiny_llama", "model.build.config.hidden_size=512", "model.build.config.intermediate_size=1408",
         "model.build.config.num_hidden_layers=8", "model.build.config.num_attention_heads=8",
         "model.build.config.num_key_value_heads=8", "method=lora", "task=translation_java_cs"]


def matmul_peak(seconds: float = 3.0, n: int = 2048) -> float:
    """fp32 GEMM FLOP/s of this machine now (the best of repeated n x n products)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def harness_cell(rows: int, grouping: bool, out: Path) -> dict:
    from conftest import compose
    from harness.run import run

    cfg = compose([*MODEL, "tracker=none", f"trainer.max_train_examples={rows}", "trainer.max_eval_examples=4",
                   "trainer.eval_before_training=false", "trainer.batch_size=16", "trainer.log_every=1000",
                   "trainer.checkpoint_every=0", "task.max_target_length=256", f"trainer.group_by_length={grouping}"])
    result = run(cfg, out)
    assert result.status == "FINISHED", result.reason
    return {"tokens": result.cost["train_tokens"], "seconds": result.cost["train_seconds"],
            "padding_share": result.cost["padding_share"]}


def hand_loop(rows: int) -> dict:
    """The loop a user writes without the harness, on the harness's own token ids."""
    import peft
    import transformers
    from hydra.utils import instantiate

    from conftest import compose
    from harness.features import build_features
    from harness.models import load_tokenizer, materialize

    cfg = compose(MODEL)
    task = instantiate(cfg.task, _convert_="all")
    data = task.load_data(task.data_plan())
    tok = load_tokenizer(cfg.model)
    features = build_features(task, data.splits["train"].select(range(rows)), data.plan.identity, tok, "decoder",
                              min(task.max_source_length, cfg.model.max_length), label="hand")
    examples = [(f["input_ids"], f["labels"]) for f in features]
    model = transformers.AutoModelForCausalLM.from_pretrained(materialize(cfg.model, tok), dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                        target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    steps = math.ceil(len(examples) / 16)
    scheduler = transformers.get_scheduler("linear", optimizer, num_warmup_steps=int(0.1 * steps), num_training_steps=steps)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    model.train()
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(order), 16):
        batch = [examples[j] for j in order[i:i + 16]]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    return {"tokens": tokens, "seconds": time.perf_counter() - start, "frozen_params": _count(model, False),
            "trainable_params": _count(model, True), "layers": 8, "hidden": 512}


def _count(model, trainable: bool) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad == trainable and "embed" not in n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    peak = matmul_peak()
    runs: dict[str, list[dict]] = {"hand": [], "grouping off": [], "grouping on": []}
    variants = {"hand": lambda k: hand_loop(args.rows),
                "grouping off": lambda k: harness_cell(args.rows, False, ROOT / f"runs/bench/train/off{k}"),
                "grouping on": lambda k: harness_cell(args.rows, True, ROOT / f"runs/bench/train/on{k}")}
    for k in range(args.rounds):
        names = list(variants) if k % 2 == 0 else list(reversed(variants))
        for name in names:
            runs[name].append(variants[name](k))
            r = runs[name][-1]
            print(f"round {k} {name:>12}: {r['tokens'] / r['seconds']:8.1f} non-pad tokens/s", flush=True)
    rate = {n: statistics.median(r["tokens"] / r["seconds"] for r in rs) for n, rs in runs.items()}
    hand = runs["hand"][0]
    tokens = hand["tokens"]
    # LoRA: the frozen matmuls run forward and backward-to-inputs (4 FLOPs a weight a token), the
    # trainable ones forward and both backwards (6); embeddings are lookups.
    flops_per_token = 4 * hand["frozen_params"] + 6 * hand["trainable_params"]
    report = {"cpus": torch.get_num_threads(), "matmul_peak_gflops": peak / 1e9, "rows": args.rows,
              "non_pad_tokens": tokens, "tokens_per_second": rate,
              "ratio_vs_hand": {n: rate[n] / rate["hand"] for n in rate},
              "padding_share": {n: runs[n][0].get("padding_share") for n in ("grouping off", "grouping on")},
              "model_flops_per_token": flops_per_token,
              "mfu": {n: rate[n] * flops_per_token / peak for n in rate}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
