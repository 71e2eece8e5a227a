"""The prepared GPU check (bench/gpu_check.sh): one GPU, nothing from the hub, under 8 minutes.

A Qwen2-architecture model of Qwen2.5-1.5B's shape (28 layers, hidden 1,536, 151,936-token
vocabulary; random weights built from the config), bf16, sdpa, on packed blocks of the Python
standard library (task=code_corpus). Each method (full, LoRA, QLoRA, DoRA, QA-LoRA, LoftQ) trains
30 steps as a harness cell; for each: non-pad training tokens/s, model-FLOPs utilisation against
the GPU's bf16 matmul peak measured here, the measured peak memory (CUDA max allocated) against
harness.estimate's figure. One JSON file: OUT/gpu_check.json.

`--smoke` runs the same code on the CPU with a tiny shape and 2 steps (a test keeps it working).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
QWEN2_1_5B = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 4096, "max_position_embeddings": 1024}
METHODS = ("full", "lora", "qlora", "dora", "qalora", "loftq")


def matmul_peak(device: str, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """The best FLOP/s of repeated square matmuls on this device and dtype."""
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t))
    return best


def overrides(shape: dict, smoke: bool, method: str) -> list[str]:
    config = [f"model.build.config.{k}={v}" for k, v in shape.items() if k != "vocab_size"]
    return ["model=tiny_llama", "model.build.config._target_=transformers.Qwen2Config", *config,
            f"+model.build.config.vocab_size={shape['vocab_size']}", f"method={method}", "task=code_corpus",
            "model.lora_target_modules=[q_proj,k_proj,v_proj,o_proj]", "tracker=none",
            f"model.max_length={128 if smoke else 1024}", f"trainer.max_steps={2 if smoke else 30}",
            f"trainer.batch_size={2 if smoke else 8}", "trainer.max_eval_examples=2", "trainer.eval_before_training=false",
            "trainer.checkpoint_every=0", "task.lines_per_file=1", "task.max_target_length=4", "trainer.log_every=10",
            *(["device=cpu"] if smoke else ["device=cuda", "precision=bf16", "model.attn_implementation=sdpa"])]


def check(method: str, shape: dict, smoke: bool, peak: float, out: Path) -> dict:
    from conftest import compose
    from harness.run import run

    cfg = compose(overrides(shape, smoke, method))
    started = time.perf_counter()
    result = run(cfg, out / method)
    row = {"method": method, "status": result.status, "reason": result.reason,
           "seconds": round(time.perf_counter() - started, 1)}
    if result.status != "FINISHED":
        return row
    c = result.cost
    flops = 6 if method == "full" else 4   # per weight per token: fwd + both bwds, or fwd + bwd to inputs
    rate = c["tokens_per_second"]
    row.update(tokens_per_second=rate, mfu=rate * flops * c["total_params"] / peak,
               peak_memory_bytes=c["peak_memory_bytes"], estimated_peak_memory_bytes=c["estimated_peak_memory_bytes"],
               estimate_ratio=(c["estimated_peak_memory_bytes"] or 0) / max(c["peak_memory_bytes"], 1),
               trainable_params=c["trainable_params"], total_params=c["total_params"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device is visible; this check needs one (--smoke runs it on the CPU)")
    shape = TINY if args.smoke else QWEN2_1_5B
    peak = matmul_peak(device, torch.float32 if args.smoke else torch.bfloat16, 1.0 if args.smoke else 3.0)
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "torch": torch.__version__, "matmul_peak_tflops": peak / 1e12, "shape": shape, "rows": []}
    for method in args.methods.split(","):
        row = check(method, shape, args.smoke, peak, out)
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"gpu_check: {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
