"""Batched prediction: length-sorted batches, no gradients, results back in input order.

Four primitives cover every task kind: class argmax, generation (KV cache, left padding for
decoders), pooled embeddings, and teacher-forced next-token argmax over windows. Features are read
batch by batch from their Arrow dataset (only the lengths of the whole split are held), so a
415,416-pair test split is scored without its token ids ever being in Python lists at once.

Under several processes (harness.distributed) each takes every n-th batch and the results are
gathered by position before they are returned, so every process returns the whole split in order.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Callable, Iterable, Iterator, Sequence

import torch

from harness import distributed
from harness.env import Device

_METER: contextvars.ContextVar[dict | None] = contextvars.ContextVar("predict_meter", default=None)


@contextlib.contextmanager
def metered() -> Iterator[dict]:
    """Counts what the primitives below push through the model while the block runs:
    {"tokens": input + generated tokens, "generated": generated tokens, "seconds": wall time}."""
    meter = {"tokens": 0, "generated": 0, "seconds": 0.0}
    token, start = _METER.set(meter), time.perf_counter()
    try:
        yield meter
    finally:
        meter["seconds"] = time.perf_counter() - start
        _METER.reset(token)


def _count(tokens: int, generated: int = 0) -> None:
    meter = _METER.get()
    if meter is not None:
        meter["tokens"] += tokens + generated
        meter["generated"] += generated


def progress(batches: Iterable[list[int]], total: int, desc: str | None = "predict") -> Iterator[list[int]]:
    """A progress bar over prediction batches (stderr; on the console whatever the tracker);
    desc=None: none (a caller that shows its own)."""
    from tqdm.auto import tqdm

    if desc is None:
        yield from batches
        return
    yield from tqdm(batches, total=total, desc=f"[harness] {desc}", unit="batch", mininterval=2.0, leave=False)


def is_arrow(features) -> bool:
    return hasattr(features, "column_names")


def rows_at(features, idx: Sequence[int], drop: Sequence[str] = ()) -> list[dict]:
    """The features at positions idx as dicts (an Arrow dataset reads just those rows)."""
    if not is_arrow(features):
        return [{k: v for k, v in features[i].items() if k not in drop} for i in idx]
    batch = features[list(idx)]
    keys = [k for k in batch if k not in drop]
    return [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]


class Sequences:
    """One column of token-id sequences (of an Arrow dataset, a list of dicts, or a list of lists),
    read batch by batch."""

    def __init__(self, features, key: str | None = "input_ids"):
        self.key = key
        self.features = features.select_columns([key]) if is_arrow(features) else features

    def __len__(self) -> int:
        return len(self.features)

    def lengths(self) -> list[int]:
        if is_arrow(self.features):
            import pyarrow.compute as pc

            return pc.list_value_length(self.features.with_format("arrow")[self.key]).to_pylist()
        return [len(self._get(f)) for f in self.features]

    def take(self, idx: Sequence[int]) -> list[list[int]]:
        if is_arrow(self.features):
            return self.features[list(idx)][self.key]
        return [self._get(self.features[i]) for i in idx]

    def _get(self, item):
        return item if self.key is None else item[self.key]


def as_sequences(seqs) -> Sequences:
    return seqs if isinstance(seqs, Sequences) else Sequences(seqs, None)


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


def length_batches(lengths: Sequence[int], batch_size: int, desc: str | None = "predict",
                   model: torch.nn.Module | None = None) -> Iterator[list[int]]:
    """Indices in batches of similar length (longest first, so a memory error shows at once),
    with a progress bar: this process's batches (all of them on one process; `model` says whether
    its weights are sharded, where every process must run as many batches)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    mine = distributed.my_batches(batches, model is not None and distributed.params_sharded(model))
    yield from progress(mine, len(mine), desc if distributed.is_main() else None)


def _autocast(device: Device):
    return torch.autocast(device.type, dtype=device.dtype, enabled=device.autocast)


@torch.no_grad()
def predict_classes(model: torch.nn.Module, features: list[dict], collate: Callable,
                    batch_size: int, device: Device) -> list[int]:
    """Argmax class per example."""
    model.eval()
    out: dict[int, int] = {}
    for idx in length_batches(Sequences(features).lengths(), batch_size, model=model):
        batch = collate(rows_at(features, idx, drop=("labels",)))
        batch = {k: v.to(device.type) for k, v in batch.items()}
        with _autocast(device):
            logits = model(**batch).logits
        _count(int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel())
        out.update(zip(idx, logits.argmax(-1).tolist()))
    out = distributed.gathered(out)
    return [out[i] for i in range(len(features))]


@torch.no_grad()
def _cache_settings(model: torch.nn.Module, decoder_only: bool, cache: str) -> dict:
    """`trainer.generation_cache`: static (the default) preallocates each batch's KV cache, where a
    dynamic cache copies it at every new token (3x slower for a batch of 64 on the CPU); dynamic
    where asked for, for encoder-decoders, and for PEFT's prompt learning (its prefix is a dynamic
    cache)."""
    peft_config = getattr(model, "active_peft_config", None)
    if cache != "static" or not decoder_only or getattr(peft_config, "is_prompt_learning", False):
        return {}
    return {"cache_implementation": "static"}


def generate(model: torch.nn.Module, prompts, pad_id: int, batch_size: int,
             device: Device, decoder_only: bool, cache: str = "static", **gen_kwargs) -> list[list[int]]:
    """New token ids per prompt (a Sequences column or a list of id lists). Decoders are
    left-padded so every prompt ends where generation starts; generate() keeps the KV cache;
    greedy unless gen_kwargs ask for beams."""
    model.eval()
    prompts = as_sequences(prompts)
    gen_kwargs = {**_cache_settings(model, decoder_only, cache), **gen_kwargs}
    if distributed.world() > 1 and distributed.params_sharded(model):
        gen_kwargs["synced_gpus"] = True  # every process runs forward until the longest batch is done
    out: dict[int, list[int]] = {}
    for idx in length_batches(prompts.lengths(), batch_size, "generate", model):
        ids, mask = pad(prompts.take(idx), pad_id, "left" if decoder_only else "right")
        with _autocast(device):
            seqs = model.generate(input_ids=ids.to(device.type), attention_mask=mask.to(device.type),
                                  use_cache=True, pad_token_id=pad_id, **gen_kwargs)
        if decoder_only:
            seqs = seqs[:, ids.shape[1]:]
        _count(int(mask.sum()), int((seqs != pad_id).sum()))
        out.update(zip(idx, seqs.tolist()))
    out = distributed.gathered(out)
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
def embed(model: torch.nn.Module, seqs, pad_id: int, batch_size: int,
          device: Device) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings, (len(seqs), hidden), float32 on the CPU."""
    model.eval()
    seqs = as_sequences(seqs)
    out: dict[int, torch.Tensor] = {}
    for idx in length_batches(seqs.lengths(), batch_size, model=model):
        ids, mask = pad(seqs.take(idx), pad_id)
        ids, mask = ids.to(device.type), mask.to(device.type)
        with _autocast(device):
            pooled = mean_pool(encoder_states(model, ids, mask), mask)
        _count(int(mask.sum()))
        pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
        out.update(zip(idx, pooled))
    out = distributed.gathered(out)
    return torch.stack([out[i] for i in range(len(seqs))]) if out else torch.empty(0)


@torch.no_grad()
def next_token_argmax(model: torch.nn.Module, windows: list[list[int]], pad_id: int,
                      batch_size: int, device: Device) -> list[list[int]]:
    """Teacher forcing: for each window w, the argmax prediction of w[j] from w[:j], j >= 1
    (so len(result) == len(w) - 1)."""
    model.eval()
    out: dict[int, list[int]] = {}
    for idx in length_batches([len(w) for w in windows], batch_size, desc=None, model=model):
        ids, mask = pad([windows[i] for i in idx], pad_id)
        with _autocast(device):
            logits = model(input_ids=ids.to(device.type), attention_mask=mask.to(device.type)).logits
        _count(int(mask.sum()))
        best = logits.argmax(-1).cpu().tolist()
        for row, i in enumerate(idx):
            out[i] = best[row][: len(windows[i]) - 1]
    out = distributed.gathered(out)
    return [out[i] for i in range(len(windows))]
