"""Weight memory of the frozen base under QLoRA (4-bit NF4, double quant), QLoRA-8bit and QA-LoRA,
side by side with LoRA on the same model (default: minilm, the pretrained all-MiniLM-L6-v2).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_qlora_memory.py [--model minilm]

"linear" is the weights of the linear layers that the quantized methods store in low bits (every
nn.Linear of the encoder under bitsandbytes; the LoRA target modules under QA-LoRA), measured as
stored, quantization constants included; "whole" is the whole frozen base (embeddings, norms and
biases stay in fp32 for every method). Ratios are LoRA bytes / method bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import cost  # noqa: E402
from harness.env import pick_device  # noqa: E402
from harness.methods.table import CONF  # noqa: E402

METHODS = ("lora", "qlora", "qlora8", "qalora")


def load(model: str, method: str) -> torch.nn.Module:
    from hydra import compose, initialize_config_dir

    from harness.config import register_resolvers
    from harness.models import load_model

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", f"method={method}"])
    net, _ = load_model(cfg.model, cfg.method, "sequence_classification", pick_device("cpu"), {"num_labels": 2})
    return net


def base_name(name: str) -> str:
    """A layer's name in the plain model, whichever wrapper (PEFT, harness.methods) holds it."""
    for prefix in ("base_model.model.", "model."):
        name = name[len(prefix):] if name.startswith(prefix) else name
    return name.replace(".base_layer", "")


def quantized_layers(net: torch.nn.Module) -> dict[str, torch.nn.Module]:
    kinds = ("Linear4bit", "Linear8bitLt", "QALoRALinear")
    return {base_name(n): m for n, m in net.named_modules() if type(m).__name__ in kinds}


def frozen_bytes(modules) -> int:
    return sum(cost.base_weight_bytes(m) for m in modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
    nets = {m: load(args.model, m) for m in METHODS}
    whole_lora = cost.base_weight_bytes(nets["lora"])
    print(f"model={args.model}; bytes of the frozen base weights (quantization constants included); "
          "LoRA's base is fp32, as the harness loads it\n")
    print("| method | low-bit linear layers | linear: LoRA bytes | linear: method bytes | ratio "
          "| ratio vs a 16-bit base | whole base: LoRA bytes | whole base: method bytes | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method in METHODS[1:]:
        layers = quantized_layers(nets[method])
        ours = frozen_bytes(layers.values())
        theirs = frozen_bytes(m for n, m in nets["lora"].named_modules()
                              if isinstance(m, torch.nn.Linear) and base_name(n) in layers)
        whole = cost.base_weight_bytes(nets[method])
        print(f"| {method} | {len(layers)} | {theirs:,} | {ours:,} | {theirs / ours:.2f}x | "
              f"{theirs / 2 / ours:.2f}x | {whole_lora:,} | {whole:,} | {whole_lora / whole:.2f}x |")


if __name__ == "__main__":
    main()
