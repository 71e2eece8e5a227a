"""nl2code (aiXcoder's AixBench, github.com/aixcoder-plugin/nl2code-dataset): natural language in, one
Java method out.

The benchmark's files are JSON Lines, one object per line (read at commit
4c2003d0a4274c8ceec5cd6149dcf445136e4141):

  src/main/resources/dataset_autotest_nl.jsonl  175 rows {task_id: int, raw_nl: str, signature: str}
  src/main/resources/dataset_manual_nl.jsonl    161 rows {task_id: int, raw_nl: str}
  src/main/resources/prediction.jsonl           a model's output: the autotest rows + code: str, end_by: str

The benchmark ships no reference method: its own scores are Java unit tests (autotest) and human
grades (manual). So the one score every output gets is `syntax_valid`, reference-free: the share
(0-100) of outputs that parse as Java methods (valid_method). Where the gold rows carry a `code`
method (every row, or none), BLEU-4 and exact match as CONCODE's evaluator computes them
(text_to_code) and, with lang="java", CodeBLEU's parts (0-1) are added.

Files (`python -m metrics nl2code --gold G --predictions P [--lang java]`): the gold is JSONL rows
with `task_id` (the benchmark's own dataset file works as is: no `code`, syntax validity only);
predictions are either the benchmark's prediction.jsonl format (rows {task_id, code}, matched by
task_id) or, for any other extension, one method per line in gold order (what the harness writes).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .formats import FormatError, read_text_lines

GRAMMAR = "modern"     # the pinned tree-sitter-java 0.21.0 wheel (see valid_method)
WRAPPER = "class _W {\n", "\n}"
FIELDS = {"task_id": int, "raw_nl": str, "signature": str, "code": str, "end_by": str}
SYNTAX_KEY = "syntax_valid"


# ---- syntax validity -----------------------------------------------------------------------------
def _parser(grammar: str):
    from .code_bleu import _parser as parser
    return parser("java", grammar)


def _broken(node) -> bool:
    """Any ERROR or MISSING node in the tree (an iterative walk: deep trees stay within the stack)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "ERROR" or n.is_missing:
            return True
        stack.extend(n.children)
    return False


def valid_method(code: str, grammar: str = GRAMMAR) -> bool:
    """Whether `code` is one or more Java method declarations and nothing else.

    A bare method is not a Java compilation unit, so it is parsed inside `class _W {\\n ... \\n}`
    (as the benchmark's predictionHelper puts each output into a class). Valid: no ERROR or MISSING
    node, the wrapper class is the only top-level declaration (the output did not close it early),
    and every member of its body, comments aside, is a method_declaration (at least one). A field, a
    constructor-like declaration without a return type, or stray statements are not a method.
    grammar: "modern" (default), the pinned tree-sitter-java 0.21.0, which also parses Java 14-17
    syntax (switch expressions, text blocks, instanceof patterns); "official" is the 0.19 grammar of
    CodeXGLUE's CodeBLEU, which flags those as errors.
    """
    if not code.strip():
        return False
    root = _parser(grammar).parse((WRAPPER[0] + code + WRAPPER[1]).encode("utf-8")).root_node
    if _broken(root):
        return False
    top = [c for c in root.children if not c.is_extra]
    if len(top) != 1 or top[0].type != "class_declaration":
        return False
    body = top[0].child_by_field_name("body")
    members = [c for c in body.children if c.is_named and not c.is_extra] if body is not None else []
    return bool(members) and all(m.type == "method_declaration" for m in members)


def syntax_flags(predictions: Sequence[str], grammar: str = GRAMMAR) -> list[float]:
    return [float(valid_method(p, grammar)) for p in predictions]


# ---- scores --------------------------------------------------------------------------------------
def _with_references(references: Sequence[str], predictions: Sequence[str], lang: str | None) -> bool:
    """True when every example has a reference method, False when none has; anything else is an error."""
    if len(references) != len(predictions):
        raise ValueError(f"nl2code: {len(references)} references but {len(predictions)} predictions")
    if not predictions:
        raise ValueError("nl2code: no examples to score")
    if lang not in (None, "java"):
        raise ValueError(f"nl2code scores Java methods; lang={lang!r} given, expected 'java' (or none)")
    empty = [i for i, r in enumerate(references) if not str(r).strip()]
    if empty and len(empty) != len(references):
        raise ValueError(f"nl2code: {len(empty)} of {len(references)} references are empty (the first: example "
                         f"{empty[0]}); expected a reference method for every example (BLEU, exact match, "
                         "CodeBLEU) or for none (syntax validity only)")
    return not empty


def compute(references: Sequence[str], predictions: Sequence[str], lang: str | None = None,
            **_) -> dict[str, float]:
    """syntax_valid (0-100); plus bleu and exact_match (0-100) and, with lang="java", CodeBLEU's
    parts (0-1) when the examples have reference methods."""
    from .registry import spec

    with_refs = _with_references(references, predictions, lang)
    flags = syntax_flags(predictions)
    out = {SYNTAX_KEY: sum(flags) / len(flags) * 100}
    if with_refs:
        out.update(spec("text_to_code").compute(list(references), list(predictions), lang=lang))
    return out


def stats(references: Sequence[str], predictions: Sequence[str], lang: str | None = None, **_):
    """Columns: [syntax flag, 1] then, with references, text_to_code's (BLEU counts, exact-match
    flag, 1, CodeBLEU's with lang)."""
    from .bleu import N_STATS
    from .registry import SufficientStats, spec

    with_refs = _with_references(references, predictions, lang)
    flags = np.asarray(syntax_flags(predictions), dtype=np.float64)
    own = np.column_stack([flags, np.ones(len(flags))])
    if not with_refs:
        return SufficientStats(own, lambda s: {SYNTAX_KEY: s[0] / s[1] * 100}, {SYNTAX_KEY: 0},
                               lambda s: {SYNTAX_KEY: s[:, 0] / s[:, 1] * 100})
    gen = spec("text_to_code").stats(list(references), list(predictions), lang=lang)

    def finalize(s: np.ndarray) -> dict[str, float]:
        return {SYNTAX_KEY: s[0] / s[1] * 100, **gen.finalize(s[2:])}

    def finalize_many(s: np.ndarray) -> dict[str, np.ndarray]:
        return {SYNTAX_KEY: s[:, 0] / s[:, 1] * 100, **gen.finalize_many(s[:, 2:])}

    return SufficientStats(np.column_stack([own, gen.rows]), finalize,
                           {SYNTAX_KEY: 0, "exact_match": 2 + N_STATS}, finalize_many)


# ---- the benchmark's JSONL files -------------------------------------------------------------------
def read_rows(path: str | Path, required: Sequence[str]) -> list[dict]:
    """Rows of a file in the benchmark's format: one JSON object per line, fields among FIELDS with
    their types, the `required` ones present, task_id unique. Errors name the file, line and field."""
    rows, seen = [], {}
    for n, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise FormatError(f"{where}: invalid JSON ({err.msg} at column {err.colno}); expected one JSON "
                              "object per line, as the nl2code benchmark's .jsonl files hold them") from None
        _check_row(row, required, where)
        if row["task_id"] in seen:
            raise FormatError(f"{where}: task_id {row['task_id']} duplicates line {seen[row['task_id']]}; "
                              "expected unique task ids")
        seen[row["task_id"]] = n
        rows.append(row)
    if not rows:
        raise FormatError(f"{path}: no rows; expected at least one JSON object")
    return rows


def _check_row(row, required: Sequence[str], where: str) -> None:
    if not isinstance(row, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in required:
        if key not in row:
            raise FormatError(f"{where}: field {key!r} is missing; expected fields {list(required)} "
                              f"(and optionally {[k for k in FIELDS if k not in required]})")
    for key, value in row.items():
        if key not in FIELDS:
            raise FormatError(f"{where}: field {key!r} is not a field of the nl2code format; expected "
                              f"fields among {list(FIELDS)}")
        kind = FIELDS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FormatError(f"{where}: field {key!r} is {type(value).__name__} {value!r:.60}; "
                              f"expected {kind.__name__}")


def read(gold: str, pred: str) -> tuple[list[str], list[str]]:
    """(references, predictions) of compute() from a gold JSONL and a predictions file."""
    rows = read_rows(gold, ("task_id",))
    refs = [r.get("code", "") for r in rows]
    if Path(pred).suffix == ".jsonl":
        found = {r["task_id"]: r["code"] for r in read_rows(pred, ("task_id", "code"))}
        missing = [r["task_id"] for r in rows if r["task_id"] not in found]
        if missing:
            raise FormatError(f"{pred}: missing prediction for task_id {missing[0]} (every gold task_id needs one)")
        return refs, [found[r["task_id"]] for r in rows]
    lines = read_text_lines(pred)
    if len(lines) != len(refs):
        raise FormatError(f"{pred}: {len(lines)} lines, but {gold} has {len(refs)}; expected one prediction "
                          "per gold row")
    return refs, lines


def write(gold: Path, pred: Path, keys: Sequence, refs: Sequence[str], preds: Sequence[str]) -> None:
    """gold: JSONL {task_id, code} (code "" where there is no reference); predictions: one per line."""
    from .formats import write_lines

    with open(gold, "w", encoding="utf-8") as f:
        for key, ref in zip(keys, refs):
            f.write(json.dumps({"task_id": key, "code": ref}, ensure_ascii=False) + "\n")
    write_lines(pred, preds)
