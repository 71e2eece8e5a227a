"""What every task shares: where its rows come from and how they are validated.

A task is data (its YAML in conf/task/); the classes here only turn that data into rows, features,
predictions in the official file format, and scores from `metrics`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import metrics
from tasks import DATA_DIR
from tasks.schema import DataError, read_jsonl, validate_row
from tasks.splits import derive_splits

SPLITS = ("train", "validation", "test")


@dataclass
class Task:
    name: str
    kind: str
    metric: str
    primary_metric: str
    schema: Mapping[str, str]
    source: Mapping[str, Any]
    id_field: str | None = None
    data_dir: str | None = None
    allowed_values: Mapping[str, list] = field(default_factory=dict)
    max_source_length: int = 256
    max_target_length: int = 128
    families: tuple[str, ...] = ("encoder", "decoder", "seq2seq")
    required_splits: tuple[str, ...] = ("train", "test")
    metric_kwargs: Mapping[str, Any] = field(default_factory=dict)  # e.g. lang= for CodeBLEU

    def unsupported(self, family: str) -> str | None:
        """Why this task cannot run on a model family, or None when it can."""
        if family not in self.families:
            return f"task {self.name} ({self.kind}) needs a model family in {list(self.families)}, got {family}"
        return None

    def model_kwargs(self) -> dict:
        """Extra from_pretrained arguments of the task's head (num_labels for classification)."""
        return {}

    def collator(self, tokenizer, family: str):
        """Pads a list of features into a batch (input ids, attention mask, labels)."""
        from tasks.encoding import PadCollator

        return PadCollator(tokenizer.pad_token_id)

    def loss(self, model, batch: dict):
        """Training loss of one batch; the head's own loss unless a task kind needs another."""
        return model(**batch).loss

    # ---- scoring ---------------------------------------------------------------------------
    def references(self, rows: list[dict]) -> list:
        """Gold values of the rows, as metrics.compute(self.metric, ...) takes them."""
        raise NotImplementedError

    def score(self, rows: list[dict], predictions: list) -> dict[str, float]:
        return metrics.compute(self.metric, self.references(rows), list(predictions), **self.metric_kwargs)

    def confidence_intervals(self, rows: list[dict], predictions: list, n_resamples: int,
                             seed: int) -> dict[str, list[float]]:
        """Bootstrap 95% CI of every metric over the test examples (seeded)."""
        from metrics.bootstrap import confidence_interval

        found = confidence_interval(self.metric, self.references(rows), list(predictions),
                                    n_resamples=n_resamples, seed=seed, **self.metric_kwargs)
        return {k: [float(lo), float(hi)] for k, (lo, hi) in found.items()}

    # ---- data ------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, list[dict]]:
        """Rows per split, validated: task.data_dir, else the hub (when online), else shipped data."""
        if self.data_dir:
            splits = self._from_dir(Path(self.data_dir).expanduser())
        elif os.environ.get("HF_DATASETS_OFFLINE") != "1" and self.source.get("hf_id"):
            splits = self._from_hub()
        else:
            splits = self._shipped()
        for name in self.required_splits:
            if not splits.get(name):
                raise DataError(f"task {self.name}: split {name!r} is missing or empty; "
                                f"expected {name}.jsonl with at least one row")
        return splits

    def _read(self, path: Path) -> list[dict]:
        return read_jsonl(path, self.schema, self.id_field, self.allowed_values)

    def _from_dir(self, root: Path) -> dict[str, list[dict]]:
        if not root.is_dir():
            raise DataError(f"task.data_dir={root}: not a directory; expected a folder with "
                            f"{', '.join(s + '.jsonl' for s in SPLITS)}")
        return {s: self._read(root / f"{s}.jsonl") for s in SPLITS if (root / f"{s}.jsonl").exists()}

    def _from_hub(self) -> dict[str, list[dict]]:
        import datasets  # imported here: offline runs never touch it

        ds = datasets.load_dataset(self.source["hf_id"], self.source.get("hf_config"))
        out = {}
        for split in SPLITS:
            if split in ds:
                where = f"{self.source['hf_id']}[{split}]"
                out[split] = [validate_row(dict(r), self.schema, f"{where} row {i}", self.allowed_values)
                              for i, r in enumerate(ds[split])]
        return out

    def _shipped(self) -> dict[str, list[dict]]:
        """Shipped real rows. `source.derive` makes the splits it names from one real file by a
        stable hash (tasks/splits.py); the other splits come from their own shipped files.
        `source.project` keeps only the schema's fields (rows borrowed from a richer schema)."""
        if not self.source.get("shipped"):
            hub = f"{self.source.get('hf_id')}[{self.source.get('hf_config')}]"
            raise DataError(f"task {self.name}: no real rows are shipped for this variant; pass "
                            f"task.data_dir=DIR ({', '.join(s + '.jsonl' for s in SPLITS)} in the "
                            f"schema of {hub}) or go online (HF_DATASETS_OFFLINE=0) to load {hub}")
        root = DATA_DIR / self.source["shipped"]
        derive = self.source.get("derive") or {}
        derived = set(derive.get("fractions", {}))
        splits = {s: self._read_shipped(root / f"{s}.jsonl") for s in SPLITS
                  if s not in derived and (root / f"{s}.jsonl").exists()}
        if derive:
            rows = self._read_shipped(root / derive["file"])
            splits.update(derive_splits(rows, derive["by"], derive["fractions"]))
        return splits

    def _read_shipped(self, path: Path) -> list[dict]:
        if not self.source.get("project"):
            return self._read(path)
        rows = read_jsonl(path, None, self.id_field)
        return [validate_row({k: r.get(k) for k in self.schema}, self.schema, f"{path} row {i}",
                             self.allowed_values) for i, r in enumerate(rows)]

    def source_uri(self) -> str:
        """Where the rows come from, for provenance (a directory, a hub id, or the shipped file)."""
        if self.data_dir:
            return str(Path(self.data_dir).expanduser().resolve())
        if os.environ.get("HF_DATASETS_OFFLINE") != "1" and self.source.get("hf_id"):
            return f"hf://datasets/{self.source['hf_id']}"
        derive = self.source.get("derive")
        return str((DATA_DIR / (self.source.get("shipped") or "") / (derive["file"] if derive else "")).resolve())

    @staticmethod
    def digest(splits: Mapping[str, list[dict]]) -> str:
        """A short content digest of the rows actually used, for provenance tags."""
        h = hashlib.sha256()
        for name in sorted(splits):
            h.update(name.encode())
            for row in splits[name]:
                h.update(repr(sorted(row.items())).encode("utf-8"))
        return h.hexdigest()[:16]
