"""Token features of a split: a batched `Dataset.map`, cached on disk and keyed by everything they
depend on (the data's identity and row selection, the tokenizer, the task's encoding settings and
code, the model's family and length), so a second cell on the same data and model reads them
memory-mapped in seconds instead of tokenising again. Several processes that want the same features
at once (the ranks of a torchrun cell, cells on other nodes sharing the cache) tokenise them once:
one builds under the key's lock, the others wait and read its finished folder (harness.files.build_once).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import inspect
import json
import os

import numpy as np

from harness.env import cache_dir
from harness.files import build_once

MAP_BATCH = 1000  # rows per batch of the tokenising map (and per Arrow write)
FEATURES = "features.arrow"  # the file inside a features folder


def tokenizer_digest(tokenizer) -> str:
    """The tokenizer's whole state (vocabulary, merges, normaliser, post-processor, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # truncation and padding are per-call settings a previous call left there
        state = json.dumps({k: v for k, v in json.loads(backend.to_str()).items()
                            if k not in ("truncation", "padding")}, sort_keys=True)
    else:
        state = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = [type(tokenizer).__name__, tokenizer.padding_side, tokenizer.truncation_side,
             tokenizer.model_max_length, sorted(tokenizer.special_tokens_map.items(), key=str)]
    return hashlib.sha256((state + json.dumps(extra, default=str)).encode()).hexdigest()[:16]


def _code_digest(task) -> str:
    """The source of the task's classes and of tasks/encoding.py: changed encoding code, new cache."""
    import tasks.encoding

    classes = [c for t in (task, *getattr(task, "members", ())) for c in type(t).__mro__]  # a composite's members too
    modules = {inspect.getmodule(c) for c in classes if c.__module__.startswith("tasks.")}
    text = "".join(inspect.getsource(m) for m in sorted(modules | {tasks.encoding}, key=lambda m: m.__name__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def features_key(task, rows, data_identity: str, tokenizer, family: str, max_length: int,
                 for_training: bool, documents: bool) -> str:
    settings = [dataclasses.asdict(task), data_identity, rows._fingerprint, len(rows), tokenizer_digest(tokenizer),
                family, max_length, for_training, documents, _code_digest(task)]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:24]


def build_features(task, rows, data_identity: str, tokenizer, family: str, max_length: int,
                   for_training: bool = True, documents: bool = False, label: str = "features"):
    """The features of `rows` (an Arrow dataset), from the cache when these exact ones were made
    before. Each feature gets a `length` column (its input length) for length-sorted batching."""
    from datasets import Dataset

    key = features_key(task, rows, data_identity, tokenizer, family, max_length, for_training, documents)
    path = cache_dir("features") / f"{task.name}-{key}"  # a folder: Dataset.map's own temporaries stay inside
    n_rows = len(rows)

    def make(tmp) -> None:
        print(f"[harness] {label}: tokenising {n_rows:,} rows (cached for the next cell)", flush=True)
        tmp.mkdir()
        _tokenise(task, rows, tokenizer, family, max_length, for_training, documents, key, tmp / FEATURES)

    built = build_once(path, make)  # once, whatever other process (rank, node) wants the same features
    found = Dataset.from_file(str(path / FEATURES))
    if not built:
        print(f"[harness] {label}: {len(found):,} features from the cache ({n_rows:,} rows)", flush=True)
    return found


def _tokenise(task, rows, tokenizer, family: str, max_length: int, for_training: bool, documents: bool,
              key: str, target) -> None:
    """The features of `rows` written to the Arrow file `target` by a batched map."""
    if documents:
        def encode(batch: list[dict]) -> list[dict]:
            return task.encode_documents(batch, tokenizer, family, max_length)
    else:
        rows = task.prepare(rows)

        def encode(batch: list[dict]) -> list[dict]:
            return task.encode(batch, tokenizer, family, max_length, for_training)
    keys = _feature_keys(encode, rows)

    def batch_fn(batch: dict) -> dict:
        release_freed_memory()
        names = list(batch)
        found = encode([dict(zip(names, values)) for values in zip(*batch.values())])
        out = {k: [f[k] for f in found] for k in keys}
        out["length"] = [len(ids) for ids in out["input_ids"]]
        if "pair_input_ids" in out:
            out["pair_length"] = [len(ids) for ids in out["pair_input_ids"]]
        for k in ("input_ids", "pair_input_ids"):  # int32 on disk: half the bytes of Python's int64
            if k in out:
                out[k] = [np.asarray(ids, dtype=np.int32) for ids in out[k]]
        return out

    with _parallel_tokenizer():
        rows.map(batch_fn, batched=True, batch_size=MAP_BATCH, remove_columns=rows.column_names,
                 cache_file_name=str(target), new_fingerprint=key, writer_batch_size=MAP_BATCH,
                 load_from_cache_file=False)


def _libc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Hand memory the tokenizer freed back to the OS. Tokenising a long split allocates and frees
    millions of small buffers; glibc keeps the freed heap (measured: 1 GB more resident after 60,000
    BigCloneBench pairs), which `malloc_trim` returns. A no-op where the C library is not glibc."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@contextlib.contextmanager
def _parallel_tokenizer():
    """The Rust tokenizer's own threads for the batch calls (every core), off again afterwards: the
    harness keeps TOKENIZERS_PARALLELISM=false so that DataLoader workers can fork safely."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _feature_keys(encode, rows) -> list[str]:
    """The columns every feature of this encoding has, from the first rows that give features."""
    for start in range(0, len(rows), 64):
        sample = rows.select(range(start, min(start + 64, len(rows))))
        found = encode(list(sample))
        if found:
            return list(found[0])
    return ["input_ids", "labels"]

