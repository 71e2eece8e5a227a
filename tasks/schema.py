"""Validate JSONL rows against a task's annotation schema before any training.

Every problem is reported as one `DataError` naming file, line, field and what was expected,
so a user can fix the file without reading the harness's code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "str": (str,),
    "bool": (bool,),
    "float": (float, int),
    "list[str]": (list,),
}


class DataError(ValueError):
    """Bad input data: the message says where and what was expected."""


def _check_type(value: Any, type_name: str) -> bool:
    if type_name not in TYPES:
        raise ValueError(f"schema type {type_name!r} is unknown; expected one of {sorted(TYPES)}")
    if type_name == "int" and isinstance(value, bool):
        return False
    if type_name == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, TYPES[type_name])


def validate_row(row: Any, schema: Mapping[str, str], where: str,
                 allowed: Mapping[str, list] | None = None) -> dict:
    """Check one row: every schema field present with its type, no extra field, allowed values."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [f for f in schema if f not in row]
    if missing:
        raise DataError(f"{where}: field {missing[0]!r} is missing; expected fields {list(schema)}")
    extra = [f for f in row if f not in schema]
    if extra:
        raise DataError(f"{where}: field {extra[0]!r} is not in the task's schema {list(schema)}")
    for field, type_name in schema.items():
        if not _check_type(row[field], type_name):
            raise DataError(f"{where}: field {field!r} is {type(row[field]).__name__} "
                            f"{row[field]!r:.60}; expected {type_name}")
    for field, values in (allowed or {}).items():
        if row[field] not in values:
            raise DataError(f"{where}: field {field!r} has unknown value {row[field]!r}; "
                            f"expected one of {list(values)}")
    return row


def read_jsonl(path: Path, schema: Mapping[str, str] | None, id_field: str | None = None,
               allowed: Mapping[str, list] | None = None) -> list[dict]:
    """Read and validate a JSONL file; duplicate ids, empty files and bad bytes are errors.
    schema=None checks only that each line is a JSON object (the caller projects and validates)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: bytes at offset {err.start} are not UTF-8; "
                        "expected a UTF-8 encoded JSONL file") from None
    rows, seen = [], {}
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 is data
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno}); "
                            "expected one JSON object per line") from None
        if schema is not None:
            validate_row(row, schema, where, allowed)
        elif not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if id_field is not None and id_field in row:
            key = row[id_field]
            if key in seen:
                raise DataError(f"{where}: field {id_field!r} value {key!r} duplicates line "
                                f"{seen[key]}; expected unique ids")
            seen[key] = number
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the split is empty; expected at least one JSON object")
    return rows
