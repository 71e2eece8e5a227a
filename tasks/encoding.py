"""Helpers every task kind shares: prompt templates, truncation, padding collators, LM blocks."""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from harness.predict import pad

IGNORE = -100  # label of a position that is not trained on (prompt, padding)


def fields(row: dict) -> dict:
    """Template values of a row: token-list fields are joined by spaces (CodeXGLUE's own format)."""
    return {k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()}


def render(template: str, row: dict) -> str:
    return template.format(**fields(row))


def template_fields(*templates: str | None) -> list[str]:
    """The row fields a set of format templates reads, in first-use order."""
    found: list[str] = []
    for template in templates:
        for _, name, _, _ in string.Formatter().parse(template or ""):
            if name and name not in found:
                found.append(name)
    return found


def iter_rows(rows, names: Sequence[str]) -> Iterator[dict]:
    """Rows with only the named fields, one at a time (an Arrow dataset reads just those columns)."""
    if hasattr(rows, "column_names"):
        rows = rows.select_columns([n for n in names if n in rows.column_names])
    for row in rows:
        yield row


def truncate(ids: list[int], limit: int, side: str = "right") -> list[int]:
    """Keep at most `limit` ids; side='left' drops the start (completion keeps the nearest context)."""
    if len(ids) <= limit:
        return ids
    return ids[len(ids) - limit:] if side == "left" else ids[:limit]


def bos(tokenizer) -> list[int]:
    """A decoder's start-of-text id, so even the first real token has a prefix to be predicted from."""
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def plain_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids without special tokens (callers add them where the model expects them)."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


@dataclass
class PadCollator:
    """Pads every sequence key of a batch: `input_ids` and `pair_input_ids` with pad_id (and get an
    attention mask), `labels` lists with IGNORE; scalar labels stay as they are. Keys outside
    `keys` (bookkeeping for prediction) are dropped, so the model only sees what it takes."""
    pad_id: int
    keys: tuple[str, ...] = ("input_ids", "labels", "pair_input_ids", "group")

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for key in self.keys:
            if key not in features[0]:
                continue
            values = [f[key] for f in features]
            if key == "labels" and isinstance(values[0], list):
                batch[key] = pad(values, IGNORE)[0]
            elif key.endswith("input_ids"):
                ids, mask = pad(values, self.pad_id)
                batch[key], batch[key.replace("input_ids", "attention_mask")] = ids, mask
            else:
                batch[key] = torch.tensor(values)
        return batch


def lm_blocks(ids: list[int], size: int) -> list[tuple[int, list[int]]]:
    """(start, window) pairs covering ids with windows of `size` that overlap by one id, so every
    position j >= 1 is predicted exactly once, from the window it is not the first id of."""
    size = max(size, 2)
    step = size - 1
    starts = range(0, max(len(ids) - 1, 1), step)
    return [(s, ids[s:s + size]) for s in starts]


def lm_feature(window: list[int]) -> dict:
    """A causal-LM training example: predict every id of the window from the ones before it."""
    return {"input_ids": window, "labels": list(window)}
