"""The causal-LM training loss without the full logits.

A Hugging Face causal LM computes logits for every position ((batch, length, vocabulary) in bf16),
upcasts them to fp32 and keeps the log-softmax for backward: for Llama 3's 128,256-token vocabulary
at 2 x 2,048 tokens that is 1 GB + 2 GB kept, and 3 GB more during backward. Here the model returns
its final hidden states only (logits for one position), and the loss is the mean cross-entropy over
the labelled positions (the prompt and padding are -100), computed in chunks of `CHUNK` positions
under activation checkpointing: each chunk's logits exist only while that chunk is computed, in
forward and again in backward. Same value as the model's own loss (tests/test_losses.py).
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

IGNORE = -100
CHUNK = 1024  # positions per logits chunk: CHUNK x vocabulary x 10 bytes at the peak


def _chunk_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(hidden).float(), labels, reduction="sum")


def causal_lm_loss(model: torch.nn.Module, batch: dict, chunk: int = CHUNK) -> torch.Tensor:
    """Mean next-token cross-entropy of `batch["labels"]` (shifted inside, as the model shifts)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
    labels = batch["labels"]
    hidden = out.hidden_states[-1][:, -labels.shape[1]:]  # prompt-learning methods prepend virtual tokens
    target = labels[:, 1:].reshape(-1)
    keep = target != IGNORE
    states = hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep]
    target = target[keep]
    head = model.get_output_embeddings()
    total = states.sum().float() * 0.0  # stays in the graph when no position is labelled
    for start in range(0, target.numel(), chunk):
        total = total + checkpoint(_chunk_loss, states[start:start + chunk], target[start:start + chunk], head,
                                   use_reentrant=False)
    return total / max(target.numel(), 1)
