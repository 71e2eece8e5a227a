"""Near-duplicate search for the contamination check: MinHash signatures of code-token shingles,
with datasketch's MinHashLSH over the TEST split only.

Only the test split is indexed (its signatures and the LSH tables); the train and validation splits
and a corpus directory are streamed past it one batch / one file at a time, so their size is bounded
by disk, never by memory (BigCloneBench's 901k train pairs, a pretraining corpus). A candidate the
LSH returns counts as a near-duplicate when its estimated Jaccard (the share of equal signature
slots) reaches the threshold; exact Jaccard is computed for the few reported examples only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

TOKEN = re.compile(r"\w+|[^\w\s]")  # code tokens: identifiers/numbers, and each punctuation mark
BATCH = 512
BATCH_CHARS = 4_000_000
HASH_CHUNK = 20_000  # shingles hashed at once (a 128 x 20,000 uint64 array: 20 MB)


def tokens(text: str) -> list[str]:
    """Code tokens of a text: `foo(a,b)` and `foo ( a , b )` (CodeXGLUE's pre-tokenised fields)
    give the same tokens."""
    return TOKEN.findall(text)


FIELD_SEP = "\x1e"  # between a row's fields: no shingle spans two fields, so their order does not matter


def shingles(text: str, size: int) -> set[bytes]:
    """The set of `size`-token shingles of each field of a text (one shingle of all its tokens when
    a field is shorter)."""
    out: set[bytes] = set()
    for part in text.split(FIELD_SEP):
        found = tokens(part)
        if found:
            out |= {" ".join(found[i:i + size]).encode("utf-8") for i in range(max(1, len(found) - size + 1))}
    return out


def exact_jaccard(a: str, b: str, size: int) -> float:
    sa, sb = shingles(a, size), shingles(b, size)
    return len(sa & sb) / len(sa | sb) if sa or sb else 0.0


def row_text(row: dict, names: list[str]) -> str:
    """A row's encoded fields as one text (token-list fields joined by spaces)."""
    parts = (row[n] for n in names if row.get(n) is not None)
    return FIELD_SEP.join(" ".join(p) if isinstance(p, list) else str(p) for p in parts)


def split_rows(ds, names: list[str]) -> Iterator[str]:
    """The texts of a split, streamed in batches of the named Arrow columns only."""
    if hasattr(ds, "column_names"):
        for batch in ds.select_columns(names).iter(batch_size=BATCH):
            columns = [batch[n] for n in names]
            for values in zip(*columns):
                yield row_text(dict(zip(names, values)), names)
    else:  # a list of dicts
        for row in ds:
            yield row_text(row, names)


def corpus_files(root: Path, extensions: list[str] | None, max_bytes: int) -> Iterator[tuple[str, str]]:
    """(relative path, text) of every file under root, in sorted order, read one at a time; files
    above max_bytes or of other extensions are passed over."""
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if extensions and path.suffix not in extensions:
                continue
            if not path.is_file() or path.stat().st_size > max_bytes:
                continue
            yield str(path.relative_to(root)), path.read_text(encoding="utf-8", errors="replace")


@dataclass
class Match:
    other: object          # the train/validation row index, or the corpus file's path
    estimated: float       # share of equal MinHash slots


@dataclass
class TestIndex:
    """MinHash signatures and LSH of the test split; `query` streams another source past it."""
    threshold: float
    num_perm: int
    shingle: int
    signatures: np.ndarray = field(default=None)  # (test rows, num_perm) uint32; empty rows all-max
    empty: int = 0                                # test rows without a code token (never matched)

    def _minhashes(self, texts: Iterable[str]):
        """Shingle sets and MinHashes of texts. One prototype's permutations serve every MinHash
        (as MinHash.bulk), and a large set is hashed in chunks: datasketch's update_batch makes a
        (num_perm x shingles) array, 2 GB for a 10 MB file at once."""
        from datasketch import MinHash

        if not hasattr(self, "_prototype"):
            self._prototype = MinHash(num_perm=self.num_perm)
        sets, hashes = [shingles(t, self.shingle) for t in texts], []
        for found in sets:
            m, values = self._prototype.copy(), list(found)
            for i in range(0, len(values), HASH_CHUNK):
                m.update_batch(values[i:i + HASH_CHUNK])
            hashes.append(m)
        return sets, hashes

    def build(self, texts: Iterable[str]) -> None:
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        chunks, start = [], 0
        for batch in _batches(texts):
            sets, hashes = self._minhashes(batch)
            with self.lsh.insertion_session() as session:
                for i, (s, m) in enumerate(zip(sets, hashes)):
                    if s:
                        session.insert(start + i, m, check_duplication=False)
                    else:
                        self.empty += 1
            chunks.append(np.stack([m.hashvalues.astype(np.uint32) for m in hashes]))
            start += len(batch)
        self.signatures = np.concatenate(chunks) if chunks else np.zeros((0, self.num_perm), np.uint32)

    def query(self, items: Iterable[tuple[object, str]]) -> tuple[dict[int, Match], int]:
        """For each test row with a near-duplicate among the items (key, text), its closest one;
        and how many items were read."""
        found: dict[int, Match] = {}
        seen = 0
        for batch in _batches(items):
            seen += len(batch)
            sets, hashes = self._minhashes(text for _, text in batch)
            for (key, _), s, m in zip(batch, sets, hashes):
                if not s:
                    continue
                values = m.hashvalues.astype(np.uint32)
                for test in self.lsh.query(m):
                    estimated = float(np.mean(self.signatures[test] == values))
                    if estimated >= self.threshold and (test not in found or estimated > found[test].estimated):
                        found[test] = Match(key, estimated)
        return found, seen


def _batches(items: Iterable, size: int = BATCH, max_chars: int = BATCH_CHARS) -> Iterator[list]:
    """Lists of up to `size` items and about `max_chars` characters of text (a corpus of large
    files never holds more than that, with its shingle sets, at once)."""
    batch: list = []
    chars = 0
    for item in items:
        batch.append(item)
        chars += len(item if isinstance(item, str) else item[1])
        if len(batch) == size or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch
