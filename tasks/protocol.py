"""A task's split protocol: how each task split is made from the splits of its source.

One spec per task split, written in the task's YAML (`source.splits`, `source.shipped.splits`):

    train: {from: train, sample: {fraction: 0.1, seed: 123456}}    # a seeded random 10%
    validation: {from: train, hash: {by: [id], range: [0.0, 0.02]}}  # cut by a stable hash
    test: {from: [train, validation, test], range: {field: label, min: 81, max: 104}, renumber: true}

`from` names source splits (hub splits, or JSONL file stems); several are concatenated in order.
Operations apply in this order: renumber (the id becomes the row's position in the concatenation),
range (an integer field within [min, max]), hash (every field of `by` hashes into [lo, hi): rows
straddling two splits are dropped, so no function is shared between train and test), sample (a
seeded random fraction). `documents: "{code}"` turns each row into a training document {text}. A YAML variant (defaults)
cancels an inherited operation with `op: null`, and an inherited split with `split: null`.
All of it works on Arrow datasets by row indices, so nothing is copied into Python lists.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.files import build_once
from tasks.schema import DataError
from tasks.splits import bucket

OPERATIONS = ("from", "renumber", "range", "hash", "sample", "documents", "hub", "config", "revision",
              "schema", "project")


def sources_of(spec: Mapping[str, Any]) -> list[str]:
    names = spec["from"]
    return [names] if isinstance(names, str) else list(names)


def clean(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without null keys: a variant's YAML cancels an inherited operation with `op: null`
    (and a schema field with `field: null`)."""
    out = {k: v for k, v in spec.items() if v is not None}
    if isinstance(out.get("schema"), Mapping):
        out["schema"] = {k: v for k, v in out["schema"].items() if v is not None}
    return out


def check_spec(split: str, spec: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(spec) - set(OPERATIONS))
    if unknown:
        raise DataError(f"{where}: split {split!r} has unknown key {unknown[0]!r}; "
                        f"expected keys among {list(OPERATIONS)}")
    if "from" not in spec:
        raise DataError(f"{where}: split {split!r} needs `from:` (the source split(s) it is made from)")


def build(datasets_: Sequence, spec: Mapping[str, Any], id_field: str | None, where: str,
          cache: Path | None = None):
    """One task split from its source datasets, by the spec's operations. A row selection of a
    file-backed split is written to its own compact Arrow file under `cache` (select_rows)."""
    from datasets import concatenate_datasets

    ds = datasets_[0] if len(datasets_) == 1 else concatenate_datasets(list(datasets_))
    if spec.get("renumber"):
        if id_field is None:
            raise DataError(f"{where}: renumber needs the task's id_field")
        ds = ds.remove_columns(id_field).add_column(id_field, np.arange(len(ds), dtype=np.int64))
    keep = np.arange(len(ds))
    if "range" in spec:
        keep = keep[_in_range(_values(ds, spec["range"]["field"]).take(pa.array(keep)), where, **spec["range"])]
    if "hash" in spec:
        keep = keep[_in_hash_range(ds, keep, **spec["hash"])]
    if "sample" in spec:
        keep = keep[_sample(len(keep), **spec["sample"])]
    if len(keep) == len(ds):
        return ds
    key = hashlib.sha256(f"{ds._fingerprint}{json.dumps(dict(spec), sort_keys=True, default=str)}".encode())
    return select_rows(ds, keep, cache / f"{key.hexdigest()[:20]}.arrow" if cache else None)


def _values(ds, field: str):
    return ds.with_format("arrow")[field]


def _in_range(column, where: str, field: str, min: int, max: int) -> np.ndarray:  # noqa: A002
    try:
        values = pc.cast(column, "int64").to_numpy(zero_copy_only=False)
    except Exception:  # noqa: BLE001 -- pyarrow raises several types for an unparsable value
        text = column.to_pylist()
        row = next(i for i, v in enumerate(text) if not str(v).lstrip("-").isdigit())
        raise DataError(f"{where} row {row}: field {field!r} is {text[row]!r}; expected an integer "
                        f"(the split takes {field} in {min}..{max})") from None
    return np.flatnonzero((values >= min) & (values <= max))


def _in_hash_range(ds, keep: np.ndarray, by: Sequence[str], range: Sequence[float]) -> np.ndarray:  # noqa: A002
    lo, hi = float(range[0]), float(range[1])
    inside = np.ones(len(keep), dtype=bool)
    for field in by:
        values = _values(ds, field).take(pa.array(keep)).to_pylist()
        points = np.fromiter((bucket(v) for v in values), dtype=np.float64, count=len(values))
        inside &= (points >= lo) & (points < hi)
    return np.flatnonzero(inside)


def _sample(n: int, fraction: float, seed: int) -> list[int]:
    """int(n * fraction) rows drawn as Python's random.Random(seed).sample draws them (the official
    CodeXGLUE scripts call random.sample after seeding), kept in their original order."""
    if not 0 < fraction <= 1:
        raise DataError(f"sample fraction {fraction} must be in (0, 1]")
    return sorted(random.Random(seed).sample(range(n), int(n * fraction)))


class _NotPlain(Exception):
    """The split is not the plain concatenation of its Arrow files (columns changed, rows added)."""


def select_rows(ds, keep: np.ndarray, path: Path | None):
    """The rows at `keep` (ascending) of a split. A split backed by Arrow files is read from them
    batch by batch with plain reads, not through a memory map, and only the kept rows are written to
    `path`: a 10% sample of a 3 GB split then costs one sequential read and neither holds nor maps
    the other 90% (`Dataset.select` would map every page it passes, `flatten_indices` too). The file
    is written once, under its lock, whatever other process wants it (harness.files.build_once)."""
    from datasets import Dataset

    files = [f["filename"] for f in ds.cache_files]
    if path is None or ds._indices is not None or not files or not all(os.path.exists(f) for f in files):
        return ds.select(keep)
    try:
        build_once(path, lambda tmp: _write_rows(ds, files, keep, tmp))
    except _NotPlain:
        return ds.select(keep)
    return Dataset.from_file(str(path))


def _write_rows(ds, files: list[str], keep: np.ndarray, target: Path) -> None:
    offset, k, writer, names = 0, 0, None, None
    for name in files:
        for batch in pa.ipc.open_stream(pa.OSFile(name)):
            stop = int(np.searchsorted(keep, offset + batch.num_rows))
            if writer is None:
                writer, names = pa.ipc.new_stream(pa.OSFile(str(target), "wb"), batch.schema), batch.schema.names
            if stop > k:
                writer.write_batch(batch.take(pa.array(keep[k:stop] - offset)))
            offset, k = offset + batch.num_rows, stop
    if writer is not None:
        writer.close()
    if offset != len(ds) or names != ds.column_names:
        raise _NotPlain


def to_documents(ds, template: str, fingerprint: str):
    """Rows -> training documents {text: template rendered on the row} (continued pretraining)."""
    from tasks.encoding import render

    def batch(rows: dict) -> dict:
        keys = list(rows)
        return {"text": [render(template, dict(zip(keys, values))) for values in zip(*rows.values())]}

    return ds.map(batch, batched=True, remove_columns=ds.column_names, new_fingerprint=fingerprint,
                  desc="documents")
