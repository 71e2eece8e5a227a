"""Batched prediction: length-sorted batches, no gradients, results back in input order.

Four primitives cover every task kind: class argmax, generation (KV cache, left padding for
decoders), pooled embeddings, and teacher-forced next-token argmax over windows.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from harness.env import Device


def pad(seqs: Sequence[Sequence[int]], value: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) padded to the longest sequence on `side`."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, span] = torch.tensor(list(s), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length (longest first, so a memory error shows at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _autocast(device: Device):
    return torch.autocast(device.type, dtype=device.dtype, enabled=device.autocast)


@torch.no_grad()
def predict_classes(model: torch.nn.Module, features: list[dict], collate: Callable,
                    batch_size: int, device: Device) -> list[int]:
    """Argmax class per example."""
    model.eval()
    out: dict[int, int] = {}
    for idx in length_batches([len(f["input_ids"]) for f in features], batch_size):
        batch = collate([{k: v for k, v in features[i].items() if k != "labels"} for i in idx])
        batch = {k: v.to(device.type) for k, v in batch.items()}
        with _autocast(device):
            logits = model(**batch).logits
        out.update(zip(idx, logits.argmax(-1).tolist()))
    return [out[i] for i in range(len(features))]


@torch.no_grad()
def generate(model: torch.nn.Module, prompts: list[list[int]], pad_id: int, batch_size: int,
             device: Device, decoder_only: bool, **gen_kwargs) -> list[list[int]]:
    """New token ids per prompt. Decoders are left-padded so every prompt ends where generation
    starts; generate() keeps the KV cache; greedy unless gen_kwargs ask for beams."""
    model.eval()
    out: dict[int, list[int]] = {}
    for idx in length_batches([len(p) for p in prompts], batch_size):
        ids, mask = pad([prompts[i] for i in idx], pad_id, "left" if decoder_only else "right")
        with _autocast(device):
            seqs = model.generate(input_ids=ids.to(device.type), attention_mask=mask.to(device.type),
                                  use_cache=True, pad_token_id=pad_id, **gen_kwargs)
        if decoder_only:
            seqs = seqs[:, ids.shape[1]:]
        out.update(zip(idx, seqs.tolist()))
    return [out[i] for i in range(len(prompts))]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states under the attention mask: one vector per sequence, any family."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-6)


def encoder_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states; encoder-decoder models use their encoder only (no decoder input needed)."""
    body = model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model
    return body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@torch.no_grad()
def embed(model: torch.nn.Module, seqs: list[list[int]], pad_id: int, batch_size: int,
          device: Device) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings, (len(seqs), hidden), float32 on the CPU."""
    model.eval()
    out: dict[int, torch.Tensor] = {}
    for idx in length_batches([len(s) for s in seqs], batch_size):
        ids, mask = pad([seqs[i] for i in idx], pad_id)
        ids, mask = ids.to(device.type), mask.to(device.type)
        with _autocast(device):
            pooled = mean_pool(encoder_states(model, ids, mask), mask)
        pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
        out.update(zip(idx, pooled))
    return torch.stack([out[i] for i in range(len(seqs))])


@torch.no_grad()
def next_token_argmax(model: torch.nn.Module, windows: list[list[int]], pad_id: int,
                      batch_size: int, device: Device) -> list[list[int]]:
    """Teacher forcing: for each window w, the argmax prediction of w[j] from w[:j], j >= 1
    (so len(result) == len(w) - 1)."""
    model.eval()
    out: dict[int, list[int]] = {}
    for idx in length_batches([len(w) for w in windows], batch_size):
        ids, mask = pad([windows[i] for i in idx], pad_id)
        with _autocast(device):
            logits = model(input_ids=ids.to(device.type), attention_mask=mask.to(device.type)).logits
        best = logits.argmax(-1).cpu().tolist()
        for row, i in enumerate(idx):
            out[i] = best[row][: len(windows[i]) - 1]
    return [out[i] for i in range(len(windows))]
