"""Batched prediction: length-sorted batches, no gradients, results back in input order."""
from __future__ import annotations

from typing import Callable

import torch

from harness.env import Device


@torch.no_grad()
def predict_classes(model: torch.nn.Module, features: list[dict], collate: Callable,
                    batch_size: int, device: Device) -> list[int]:
    """Argmax class per example. Sorting by length keeps padding (and wasted compute) small."""
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out: dict[int, int] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([{k: v for k, v in features[i].items() if k != "labels"} for i in idx])
        batch = {k: v.to(device.type) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=device.dtype, enabled=device.autocast):
            logits = model(**batch).logits
        out.update(zip(idx, logits.argmax(-1).tolist()))
    return [out[i] for i in range(len(features))]
