"""Which training examples share a batch, in what order, and how much of each batch is padding.

`trainer.group_by_length: true` (the default): each epoch's order is transformers'
`get_length_grouped_indices`, a seeded random permutation cut into mega-batches of
`trainer.length_group_batches` batches (100), each sorted by length (the longest example first), so
the examples of a batch have similar lengths and pad little (measured with the tiny models'
tokenizer at batch size 16: translation_java_cs 68% padding in random order, 3.9% grouped;
summarize_ruby 50% and 1.1%; transformers' own default of up to 50 batches leaves 6.9% and 5.8%). `false`: a plain seeded random permutation. Either order is a function of
(seed, epoch) and the lengths only, so a resumed cell draws the same batches again and skips the
ones it already trained on.
"""
from __future__ import annotations

from typing import Sequence

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool = True, group_batches: int = 100) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch; every example exactly once. Grouped
    batches are then shuffled (seeded), the longest staying first so that a memory error shows at
    once: a mega-batch is sorted longest first, and a small dataset is a single mega-batch."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if not group_by_length or len(lengths) <= batch_size:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    order = get_length_grouped_indices(list(lengths), batch_size, mega_batch_mult=group_batches, generator=generator)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rest = torch.randperm(len(batches) - 1, generator=generator).tolist()
    return [batches[0], *(batches[1 + i] for i in rest)]


def feature_lengths(features) -> tuple[list[int], list[int] | None]:
    """Tokens of each feature's input and of its paired input (retrieval), or None without one:
    the feature cache's `length` / `pair_length` columns, or counted for a list of dicts."""
    if hasattr(features, "column_names"):
        names = features.column_names
        lengths = features["length"] if "length" in names else [len(x) for x in features["input_ids"]]
        pairs = features["pair_length"] if "pair_length" in names else None
        return lengths, pairs
    lengths = [len(f["input_ids"]) for f in features]
    has_pairs = bool(features) and "pair_input_ids" in features[0]
    return lengths, [len(f["pair_input_ids"]) for f in features] if has_pairs else None


def batch_tokens(batch: Sequence[int], lengths: Sequence[int], pairs: Sequence[int] | None) -> tuple[int, int]:
    """(real tokens, padded positions) of a batch whose inputs are padded to the batch's longest, as
    the collators pad them (and the paired inputs to theirs)."""
    real = sum(lengths[i] for i in batch)
    positions = len(batch) * max(lengths[i] for i in batch)
    if pairs is not None:
        real += sum(pairs[i] for i in batch)
        positions += len(batch) * max(pairs[i] for i in batch)
    return real, positions
