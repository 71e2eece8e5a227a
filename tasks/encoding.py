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


def token_ids(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int | None = None,
              add_special_tokens: bool = True) -> list[list[int]]:
    """The ids `tokenizer(texts, pairs, truncation=True, max_length=...)["input_ids"]` gives
    (tests/test_task_encoding.py checks it on every tokenizer here), computed faster: each text is
    tokenised once by the Rust batch call without offsets or truncation, then cut by the library's own
    longest-first rule and wrapped in the special tokens its post-processor adds. (With truncation on,
    the library builds every overflowing window of every pair: 31 per BigCloneBench pair, 0.7 GB per
    1,000 pairs, twice the time.)"""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    layout = _special_layout(backend, pairs is not None) if backend is not None and add_special_tokens else ([], [], [])
    if backend is None or layout is None or not hasattr(backend, "encode_batch_fast"):
        return tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=max_length is not None,
                         max_length=max_length, add_special_tokens=add_special_tokens)["input_ids"]
    backend.no_truncation()
    backend.no_padding()
    first = [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]
    second = [e.ids for e in backend.encode_batch_fast(list(pairs), add_special_tokens=False)] if pairs is not None else None
    prefix, middle, suffix = layout
    budget = None if max_length is None else max_length - len(prefix) - len(middle) - len(suffix)
    left = tokenizer.truncation_side == "left"
    if second is None:
        return [prefix + _cut(a, budget, left) + suffix for a in first]
    out = []
    for a, b in zip(first, second):
        n1, n2 = (len(a), len(b)) if budget is None else longest_first(len(a), len(b), budget)
        out.append(prefix + _cut(a, n1, left) + middle + _cut(b, n2, left) + suffix)
    return out


def longest_first(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text of a pair `tokenizers` keeps under its longest-first truncation
    (the library's rule: the shorter text whole if the longer can fill the rest, else half each)."""
    if n1 + n2 <= budget:
        return n1, n2
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    return (n2, n1) if swap else (n1, n2)


def _cut(ids: list[int], n: int | None, left: bool) -> list[int]:
    if n is None or len(ids) <= n:
        return ids
    return ids[len(ids) - n:] if left else ids[:n]


def _special_layout(backend, pair: bool) -> tuple[list[int], list[int], list[int]] | None:
    """The special ids the post-processor puts before, between and after the text(s), read off by
    post-processing one-token marker texts; None when they cannot be read off that way."""
    marks = [backend.encode(t, add_special_tokens=False) for t in ("a", "b")]
    if any(len(m.ids) != 1 for m in marks) or marks[0].ids == marks[1].ids:
        return None
    ids = backend.post_process(marks[0], marks[1] if pair else None, True).ids
    a, b = marks[0].ids[0], marks[1].ids[0]
    if ids.count(a) != 1 or (pair and (ids.count(b) != 1 or ids.index(b) < ids.index(a))):
        return None
    i = ids.index(a)
    if not pair:
        return ids[:i], [], ids[i + 1:]
    j = ids.index(b)
    return ids[:i], ids[i + 1:j], ids[j + 1:]


def plain_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids without special tokens (callers add them where the model expects them)."""
    return token_ids(tokenizer, texts, add_special_tokens=False)


@dataclass
class PadCollator:
    """Pads every sequence key of a batch: `input_ids` and `pair_input_ids` with pad_id (and get an
    attention mask), `labels` lists with IGNORE; scalar labels stay as they are. Keys outside
    `keys` (bookkeeping for prediction) are dropped, so the model only sees what it takes."""
    pad_id: int
    keys: tuple[str, ...] = ("input_ids", "labels", "pair_input_ids", "group", "position_ids")

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        """Packed blocks (they carry `position_ids`) get no attention mask: the position ids, which
        restart at every document, make transformers keep attention within each document."""
        batch: dict[str, torch.Tensor] = {}
        packed = "position_ids" in features[0]
        for key in self.keys:
            if key not in features[0]:
                continue
            values = [f[key] for f in features]
            if key == "labels" and isinstance(values[0], list):
                batch[key] = pad(values, IGNORE)[0]
            elif key == "position_ids":  # padding is a segment of its own, starting at 0
                width = max(len(v) for v in values)
                batch[key] = torch.tensor([list(v) + list(range(width - len(v))) for v in values])
            elif key.endswith("input_ids"):
                ids, mask = pad(values, self.pad_id)
                batch[key] = ids
                if not packed:
                    batch[key.replace("input_ids", "attention_mask")] = mask
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


def pack(documents: Sequence[list[int]], block: int) -> list[dict]:
    """Token-id documents concatenated and cut into blocks of `block` positions (only the last may be
    shorter), attention kept within each document: position ids restart at every document, which
    makes transformers build a block-diagonal causal mask (no attention mask is passed), and a
    document's first token is not predicted from the one before it (label IGNORE). A document
    longer than the room left continues in the next block as a segment of its own."""
    out: list[dict] = []
    ids: list[int] = []
    positions: list[int] = []
    labels: list[int] = []
    for doc in documents:
        start = 0
        while start < len(doc):
            piece = doc[start:start + block - len(ids)]
            ids += piece
            positions += range(len(piece))
            labels += [IGNORE, *piece[1:]]
            start += len(piece)
            if len(ids) == block:
                out.append({"input_ids": ids, "labels": labels, "position_ids": positions})
                ids, positions, labels = [], [], []
    if len(ids) > 1:
        out.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return out
