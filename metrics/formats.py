"""Readers and writers of the official CodeXGLUE file formats (see golden/README.md).

Readers raise FormatError naming the file, the 1-based line and what was expected; the official
scripts exit silently (or crash) on the same input.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence


class FormatError(ValueError):
    """A gold or prediction file that does not have the official format."""


def read_text_lines(path: str | Path) -> list[str]:
    """Lines as Python's readlines() would give them, without the trailing newline."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line[:-1] if line.endswith("\n") else line for line in f.readlines()]
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text ({e})") from None


def read_jsonl(path: str | Path, required: Sequence[str] = ()) -> list[dict]:
    out = []
    for n, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{n}: expected a JSON object per line ({e.msg})") from None
        if not isinstance(obj, dict):
            raise FormatError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        for key in required:
            if key not in obj:
                raise FormatError(f"{path}:{n}: missing key {key!r} (expected keys {list(required)})")
        out.append(obj)
    return out


def _label(path: Any, n: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FormatError(f"{path}:{n}: expected an integer label, got {value!r}") from None


# ---------------------------------------------------------------- readers
def read_pair_labels(path: str | Path) -> dict[tuple[str, str], int]:
    """BigCloneBench `idx1 idx2 label` (any whitespace); duplicate keys collapse (last wins)."""
    out: dict[tuple[str, str], int] = {}
    for n, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise FormatError(f"{path}:{n}: expected 'idx1 idx2 label', got {line!r}")
        out[(parts[0], parts[1])] = _label(path, n, parts[2])
    return out


def read_idx_labels(path: str | Path, sep: str | None = None) -> dict[str, int]:
    """`idx label` lines (Devign: whitespace; WebQuery: tab)."""
    out: dict[str, int] = {}
    for n, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        parts = line.strip().split(sep)
        if len(parts) < 2:
            raise FormatError(f"{path}:{n}: expected 'idx{'<TAB>' if sep == chr(9) else ' '}label', got {line!r}")
        out[parts[0]] = _label(path, n, parts[1])
    return out


def read_devign_gold(path: str | Path) -> dict[str, int]:
    """Devign test JSONL: idx -> int(target) (bool True == 1)."""
    return {str(o["idx"]): int(o["target"]) for o in read_jsonl(path, ("idx", "target"))}


def read_ranked(path: str | Path, key: str) -> dict[str, list]:
    """POJ-104 (`index`) or AdvTest (`url`) predictions: key -> ranked answers."""
    out: dict[str, list] = {}
    for n, obj in enumerate(read_jsonl(path, (key, "answers")), 1):
        if not isinstance(obj["answers"], list):
            raise FormatError(f"{path}: entry {n}: 'answers' must be a list of indices")
        out[str(obj[key])] = obj["answers"]
    return out


def read_poj104_gold(path: str | Path) -> dict[str, list[str]]:
    """test.jsonl (`index`, `label`) -> answers per index (other items with that label), or an
    already derived answers.jsonl (`index`, `answers`)."""
    rows = read_jsonl(path)
    if rows and "answers" in rows[0]:
        return {str(o["index"]): [str(a) for a in o["answers"]] for o in rows}
    for n, o in enumerate(rows, 1):
        if "index" not in o or "label" not in o:
            raise FormatError(f"{path}: entry {n}: expected keys 'index' and 'label'")
    by_label: dict[str, list[str]] = {}
    for o in rows:
        by_label.setdefault(str(o["label"]), []).append(str(o["index"]))
    return {str(o["index"]): [i for i in by_label[str(o["label"])] if i != str(o["index"])] for o in rows}


def read_id_text(path: str | Path, gold: bool) -> list[tuple[str, str]]:
    """code-to-text `id<TAB>text`: gold lines need exactly 2 fields; a prediction with one field is
    empty and text after a second tab is dropped (official computeMaps)."""
    out = []
    for n, line in enumerate(read_text_lines(path), 1):
        if gold:
            cols = line.split("\t")
            if len(cols) != 2:
                raise FormatError(f"{path}:{n}: expected 'id<TAB>text' (2 fields), got {len(cols)} fields")
            out.append((cols[0], cols[1]))
        else:
            cols = line.strip().split("\t")
            out.append((cols[0], "" if len(cols) == 1 else cols[1]))
    return out


# ---------------------------------------------------------------- writers
def _write(path: str | Path, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def _one_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} contains a newline; the official format is one per line")
    return text


def write_pair_labels(path: str | Path, pairs: Iterable[tuple[Any, Any, int]]) -> None:
    """BigCloneBench predictions: `idx1<TAB>idx2<TAB>label`."""
    _write(path, (f"{a}\t{b}\t{int(y)}" for a, b, y in pairs))


def write_idx_labels(path: str | Path, items: Iterable[tuple[Any, int]], sep: str = "\t") -> None:
    """Devign (`idx<TAB>label`) or WebQuery (`idx<TAB>label`) predictions."""
    _write(path, (f"{i}{sep}{int(y)}" for i, y in items))


def write_ranked(path: str | Path, items: Iterable[tuple[Any, Sequence]], key: str) -> None:
    """POJ-104 (key='index', str indices) or AdvTest (key='url', int idx) JSONL predictions."""
    _write(path, (json.dumps({key: k, "answers": list(v)}) for k, v in items))


def write_lines(path: str | Path, texts: Iterable[str]) -> None:
    """One prediction per line (line completion, refinement, translation, CONCODE, token completion)."""
    _write(path, (_one_line(t, "prediction") for t in texts))


def write_token_lines(path: str | Path, token_lists: Iterable[Sequence[str]]) -> None:
    _write(path, (" ".join(toks) for toks in token_lists))


def write_id_text(path: str | Path, items: Iterable[tuple[Any, str]]) -> None:
    """code-to-text predictions `id<TAB>text` (tabs/newlines in text become spaces)."""
    _write(path, (f"{i}\t{' '.join(t.split())}" for i, t in items))
