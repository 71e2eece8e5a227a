"""MFTCoder's loss balancing across the tasks of one multi-task adapter (Liu et al. 2023,
"MFTCoder: Boosting Code LLMs with Multitask Fine-Tuning", section on balanced losses).

A batch mixes examples of N tasks. For example j of task i with T_ij labelled target tokens of
per-token loss l_ijk = -log p_ijk, the schemes (`multitask.balance`) are, over the tasks present in
the batch (N of them):

- equal:   L = (1/N) sum_i [ sum_j sum_k l_ijk / sum_j T_ij ]
           each task's token-mean loss, averaged over the tasks ("weight each task equally"), so a
           task with few rows pulls as hard as one with many.
- samples: L = (1/B) sum_i sum_j [ sum_k l_ijk / T_ij ]     (B examples in the batch)
           every example weighs the same, so a task weighs by its share of the examples.
- focal:   P_i = (1/M_i) sum_j (1/T_ij) sum_k p_ijk          (M_i examples of task i in the batch)
           L = (1/N) sum_i -(1 - P_i)^gamma log(P_i)
           MFTCoder's task-level focal loss with alpha_i = 1: P_i is the task's mean token
           probability (accuracy-like); a task the model predicts worse (lower P_i) weighs up by
           (1 - P_i)^gamma. gamma = `multitask.gamma` (default 2, the focal-loss paper's); gamma = 0
           gives (1/N) sum_i -log P_i. Gradients flow through the modulating factor, as in focal loss.

An example without labelled tokens (its target cut off) adds nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100
BALANCES = ("equal", "samples", "focal")


def token_losses(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per example: the sum of its target tokens' losses, their count, and the sum of their
    probabilities. A seq2seq model scores `labels` directly; a causal LM predicts labels[t + 1] at
    position t (the prompt and padding are IGNORE). The full logits are materialised here (unlike
    harness.losses, which only returns the mean)."""
    labels = batch["labels"]
    if getattr(model.config, "is_encoder_decoder", False):
        logits, target = model(**batch).logits, labels
    else:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        logits, target = logits[:, -labels.shape[1]:][:, :-1], labels[:, 1:]  # virtual tokens come first
    nll = F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=IGNORE, reduction="none")
    keep = (target != IGNORE).float()
    return (nll * keep).sum(1), keep.sum(1), (torch.exp(-nll) * keep).sum(1)


def balanced_loss(sums: torch.Tensor, counts: torch.Tensor, probs: torch.Tensor, task: torch.Tensor,
                  balance: str, gamma: float = 2.0) -> torch.Tensor:
    """The batch's loss under `balance` (module docstring); task: each example's task index."""
    if balance not in BALANCES:
        raise ValueError(f"multitask.balance={balance!r}: must be one of {', '.join(BALANCES)}")
    labelled = counts > 0
    if not bool(labelled.any()):
        return sums.sum() * 0.0  # nothing to learn from, still in the graph
    sums, counts, probs, task = sums[labelled], counts[labelled], probs[labelled], task[labelled]
    if balance == "samples":
        return (sums / counts).mean()
    present = torch.unique(task)
    if balance == "equal":
        return torch.stack([sums[task == t].sum() / counts[task == t].sum() for t in present]).mean()
    p = torch.stack([(probs[task == t] / counts[task == t]).mean() for t in present]).clamp(1e-12, 1.0)
    return (-(1 - p) ** gamma * torch.log(p)).mean()
