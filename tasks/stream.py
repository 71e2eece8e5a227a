"""A streamed corpus made into a cell's splits: filter, deduplicate, hold out, tokenise, stop at a
token budget, with nothing of the stream held in memory but the deduplication index.

Documents (tasks/stream_sources.py) pass, in stream order:
1. filters: language (`task.languages`, case-insensitive; by folder where the data files are one
   per language), licence (`task.licenses`: any of the document's), file size (`min_file_bytes`,
   `max_file_bytes`; a larger file is never read);
2. deduplication: exact (sha256 of the text, each line stripped) and near (MinHash of word
   5-grams with datasketch's MinHashLSH, `dedup.threshold` Jaccard), against every document kept
   so far, held-out ones included, so no near copy of a test file is trained on;
3. held out by a stable hash of repo/path: `held_out.validation` and `held_out.test` shares of the
   stream, at most `held_out.max_documents` each (the rest of those hash buckets is dropped, never
   trained on), kept as text for token- and line-completion evaluation;
4. training documents tokenised in batches and kept as token ids, until `max_train_tokens`.

Every `shard_documents` training documents a shard (Arrow files per split, and the dedup
signatures) is written, then a state file: the stream's own `state_dict()` and the counters. A killed
run starts again from the last state, at the same stream position, with the same dedup index. The
finished splits are the shards memory-mapped; `record` is what the cell records (dataset, revision,
filters, documents and tokens seen, what was dropped and why).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.stream_sources import language_by_folder, open_stream

TRAIN = pa.schema([("path", pa.string()), ("input_ids", pa.list_(pa.int32()))])
HELD = pa.schema([("path", pa.string()), ("text", pa.string()), ("language", pa.string())])
TOKENISE_BATCH = 64


class Dedup:
    """Exact and near-duplicate detection over the documents kept so far."""

    def __init__(self, near: bool, threshold: float, num_perm: int, shingle: int):
        from datasketch import MinHashLSH

        self.num_perm, self.shingle = num_perm, shingle
        self.exact: set[bytes] = set()
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm) if near else None
        self.new: list[tuple[bytes, np.ndarray]] = []  # since the last shard

    def _minhash(self, text: str, hashvalues: np.ndarray | None = None):
        from datasketch import MinHash

        if hashvalues is not None:
            return MinHash(num_perm=self.num_perm, hashvalues=hashvalues)
        words = text.split()
        grams = {" ".join(words[i:i + self.shingle]) for i in range(max(1, len(words) - self.shingle + 1))}
        m = MinHash(num_perm=self.num_perm)
        m.update_batch([g.encode("utf-8") for g in grams])
        return m

    def check(self, text: str) -> str | None:
        """'exact_duplicate', 'near_duplicate', or None (then the document is remembered)."""
        digest = hashlib.sha256("\n".join(line.strip() for line in text.splitlines()).encode()).digest()
        if digest in self.exact:
            return "exact_duplicate"
        m = self._minhash(text) if self.lsh is not None else None
        if m is not None and self.lsh.query(m):
            return "near_duplicate"
        self._add(digest, m)
        self.new.append((digest, m.hashvalues.copy() if m is not None else np.zeros(self.num_perm, np.uint64)))
        return None

    def _add(self, digest: bytes, m) -> None:
        self.exact.add(digest)
        if self.lsh is not None:
            self.lsh.insert(digest.hex(), m, check_duplication=False)

    def save_new(self, path: Path) -> None:
        digests = np.frombuffer(b"".join(d for d, _ in self.new), dtype=np.uint8).reshape(-1, 32)
        values = np.stack([v for _, v in self.new]) if self.new else np.zeros((0, self.num_perm), np.uint64)
        np.savez(path, digests=digests, values=values)
        self.new = []

    def load(self, path: Path) -> None:
        found = np.load(path)
        for digest, values in zip(found["digests"], found["values"]):
            self._add(digest.tobytes(), self._minhash("", values) if self.lsh is not None else None)


def held_out_split(doc: dict, shares: dict) -> str:
    key = f"{doc.get('repo') or ''}/{doc.get('path') or hashlib.sha256((doc['text'] or '').encode()).hexdigest()}"
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16 ** 12
    if bucket < shares.get("validation", 0):
        return "validation"
    if bucket < shares.get("validation", 0) + shares.get("test", 0):
        return "test"
    return "train"


class StreamBuild:
    """One build of a streamed corpus into `folder` (resumed where a previous one stopped)."""

    def __init__(self, task, plan, tokenizer, folder: Path):
        self.task, self.plan, self.tokenizer, self.folder = task, plan, tokenizer, folder
        dedup = task.dedup
        self.dedup = Dedup(bool(dedup.get("near")), dedup["threshold"], dedup["num_perm"],
                           dedup["shingle"]) if dedup.get("exact") or dedup.get("near") else None
        self.state: dict[str, Any] = {"shards": 0, "seen": 0, "tokens": 0, "kept": Counter(), "dropped": Counter(),
                                      "stream": None, "memory": []}
        self.buffers: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
        self.pending: list[dict] = []

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> dict:
        stream = open_stream(self.task, self.plan, self.task.max_file_bytes)
        if self._resume():
            stream.load_state_dict(self.state["stream"])
            print(f"[harness] stream: resuming at document {self.state['seen']:,} ({self.state['tokens']:,} "
                  "training tokens so far)", flush=True)
        budget, batch = self.task.max_train_tokens, min(TOKENISE_BATCH, self.task.shard_documents)
        for doc in stream:
            self.state["seen"] += 1
            self._take(doc)
            if len(self.pending) >= batch:
                self._tokenise()
            if budget is not None and self.state["tokens"] >= budget:
                break
            if len(self.buffers["train"]) >= self.task.shard_documents:
                self.state["stream"] = stream.state_dict()
                self._flush()
        self._tokenise()
        self.state["stream"] = stream.state_dict()
        self.state["budget_reached"] = budget is not None and self.state["tokens"] >= budget
        self._flush()
        return self.state

    def _take(self, doc: dict) -> None:
        reason = self._filtered(doc)
        if reason is None and doc["text"] is not None:
            reason = self.dedup.check(doc["text"]) if self.dedup is not None else None
        if reason is None:
            split = held_out_split(doc, self.task.held_out)
            if split != "train" and self.state["kept"][split] >= self.task.held_out["max_documents"]:
                reason = f"held_out_{split}_full"
            elif split != "train":
                self.state["kept"][split] += 1
                self.buffers[split].append({"path": doc["path"], "text": doc["text"], "language": doc["language"]})
            else:
                self.pending.append(doc)
        if reason is not None:
            self.state["dropped"][reason] += 1

    def _filtered(self, doc: dict) -> str | None:
        task = self.task
        wanted = {x.lower() for x in task.languages}
        if wanted and not language_by_folder(task.stream) and str(doc["language"] or "").lower() not in wanted:
            return "language"
        if task.licenses and not set(doc["license"]) & set(task.licenses):
            return "license"
        if not task.min_file_bytes <= doc["size"] <= task.max_file_bytes:
            return "size"
        if doc["text"] is None:
            return "not_utf8"
        if not doc["text"].strip():
            return "empty"
        return None

    def _tokenise(self) -> None:
        from tasks.encoding import plain_ids

        if not self.pending:
            return
        budget = self.task.max_train_tokens
        for doc, ids in zip(self.pending, plain_ids(self.tokenizer, [d["text"] for d in self.pending])):
            if budget is not None and self.state["tokens"] >= budget:
                self.state["dropped"]["after_budget"] += 1
                continue
            self.buffers["train"].append({"path": doc["path"], "input_ids": ids})
            self.state["tokens"] += len(ids)
            self.state["kept"]["train"] += 1
        self.pending = []

    # ---- shards and state ---------------------------------------------------------------------------
    def _flush(self) -> None:
        n = self.state["shards"]
        for split, rows in self.buffers.items():
            schema = TRAIN if split == "train" else HELD
            table = pa.Table.from_pylist(rows, schema=schema)
            with pa.OSFile(str(self.folder / f"{split}-{n:05d}.arrow"), "wb") as sink:
                with pa.ipc.new_stream(sink, schema) as writer:
                    writer.write_table(table)
            rows.clear()
        if self.dedup is not None:
            self.dedup.save_new(self.folder / f"dedup-{n:05d}.npz")
        self.state["shards"] = n + 1
        self.state["memory"].append([self.state["seen"], self.state["tokens"], _rss()])
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, default=_jsonable))
        os.replace(tmp, self.folder / "state.json")  # last: a crash before it keeps the previous state

    def _resume(self) -> bool:
        path = self.folder / "state.json"
        if not path.exists():
            return False
        saved = json.loads(path.read_text())
        saved["kept"], saved["dropped"] = Counter(saved["kept"]), Counter(saved["dropped"])
        self.state = saved
        if self.dedup is not None:
            for n in range(saved["shards"]):
                self.dedup.load(self.folder / f"dedup-{n:05d}.npz")
        return True


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    return str(value)


def splits(folder: Path, shards: int) -> dict:
    """The finished splits: every shard of each split, memory-mapped and concatenated."""
    from datasets import Dataset, concatenate_datasets

    out = {}
    for split in ("train", "validation", "test"):
        parts = [Dataset.from_file(str(folder / f"{split}-{n:05d}.arrow")) for n in range(shards)]
        out[split] = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return out

