"""The method compatibility table (method x model family x task head, on CPU and GPU) as Markdown,
read from the `supports:` rules of conf/method/*.yaml: `python -m harness.methods.table`."""
from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from harness.compat import method_unsupported
from harness.config import register_resolvers
from harness.env import Device

CONF = Path(__file__).resolve().parents[2] / "conf"
COLUMNS = (("encoder", "sequence_classification", "encoder · cls"), ("encoder", "embedding", "encoder · emb"),
           ("decoder", "sequence_classification", "decoder · cls"), ("decoder", "causal_lm", "decoder · LM"),
           ("decoder", "embedding", "decoder · emb"),
           ("seq2seq", "sequence_classification", "seq2seq · cls"), ("seq2seq", "seq2seq_lm", "seq2seq · LM"),
           ("decoder", "causal_lm", "GPT-2 Conv1D · LM", "conv1d"))
DEVICES = (("cpu", "CPU"), ("cuda", "CUDA"))


def method_configs() -> dict[str, DictConfig]:
    register_resolvers()
    names = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return {n: compose("config", overrides=[f"method={n}", "model=tiny_bert"]).method for n in names}


def markdown(methods: dict[str, DictConfig]) -> str:
    """One row per method; ✗ cells carry a footnote number that the list below the table explains."""
    notes: list[str] = []

    def cell(method: DictConfig, family: str, head: str, device: str, layer: str = "linear") -> str:
        reason = method_unsupported(method, family, head, Device(device, torch.float32), layer)
        if reason is None:
            return "✓"
        note = reason.split(": ", 1)[-1]  # the rule's reason, shared by all the cells it rules out
        if note not in notes:
            notes.append(note)
        return f"✗ [{notes.index(note) + 1}]"

    header = ["method", *(c[2] for c in COLUMNS), *(d[1] for d in DEVICES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, method in methods.items():
        cells = [cell(method, f, h, "cuda", *layer) for f, h, _, *layer in COLUMNS]
        cells += [cell(method, "decoder", "causal_lm", d) for d, _ in DEVICES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *(f"[{i}] {n}" for i, n in enumerate(notes, 1))]
    lines += ["", "CPU / CUDA: on a decoder with an LM head; the other columns assume a GPU and nn.Linear "
                  "projections, except the GPT-2 column (transformers' Conv1D, e.g. model=tiny_gpt2)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(method_configs()))
