"""Validate rows against a task's annotation schema before any training.

Every problem is reported as one `DataError` naming where (file and line, or dataset, split and row),
the field and what was expected, so a user can fix the data without reading the harness's code.
JSON Lines are checked row by row as they stream into Arrow; Arrow data (the hub's parquet) is
checked column by column with pyarrow, naming the first failing row.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    _check_fields(list(row), schema, where)
    for field, type_name in schema.items():
        if not _check_type(row[field], type_name):
            raise DataError(f"{where}: field {field!r} is {type(row[field]).__name__} "
                            f"{row[field]!r:.60}; expected {type_name}")
    for field, values in (allowed or {}).items():
        if row[field] not in values:
            raise DataError(f"{where}: field {field!r} has unknown value {row[field]!r}; "
                            f"expected one of {list(values)}")
    return row


def _check_fields(present: list[str], schema: Mapping[str, str], where: str) -> None:
    """The schema's fields, and only them."""
    missing = [f for f in schema if f not in present]
    if missing:
        raise DataError(f"{where}: field {missing[0]!r} is missing; expected fields {list(schema)}")
    extra = [f for f in present if f not in schema]
    if extra:
        raise DataError(f"{where}: field {extra[0]!r} is not in the task's schema {list(schema)}")


def iter_jsonl(path: Path, schema: Mapping[str, str], id_field: str | None = None,
               allowed: Mapping[str, list] | None = None, project: bool = False) -> Iterator[dict]:
    """Validated rows of a JSONL file, one at a time (memory stays flat whatever the file's size).
    Invalid JSON, bad bytes, duplicate ids and an empty file are errors naming the line.
    project: keep only the schema's fields of each row (rows borrowed from a richer schema)."""
    seen: dict = {}
    count = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):  # bytes lines: U+2028 inside a string is data
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: bytes at offset {err.start} are not UTF-8; "
                                "expected a UTF-8 encoded JSONL file") from None
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno}); "
                                "expected one JSON object per line") from None
            if project and isinstance(row, dict):
                row = {k: row.get(k) for k in schema}
            validate_row(row, schema, where, allowed)
            if id_field is not None and id_field in row:
                key = row[id_field]
                if key in seen:
                    raise DataError(f"{where}: field {id_field!r} value {key!r} duplicates line "
                                    f"{seen[key]}; expected unique ids")
                seen[key] = number
            count += 1
            yield row
    if not count:
        raise DataError(f"{path}: the split is empty; expected at least one JSON object")


def read_jsonl(path: Path, schema: Mapping[str, str], id_field: str | None = None,
               allowed: Mapping[str, list] | None = None) -> list[dict]:
    """All validated rows of a (small) JSONL file as a list."""
    return list(iter_jsonl(path, schema, id_field, allowed))


# ---- Arrow ---------------------------------------------------------------------------------------
def arrow_features(schema: Mapping[str, str]):
    """The `datasets.Features` a schema's rows are stored with."""
    from datasets import Features, List, Value

    kinds = {"int": Value("int64"), "str": Value("string"), "bool": Value("bool"),
             "float": Value("float64"), "list[str]": List(Value("string"))}
    return Features({field: kinds[type_name] for field, type_name in schema.items()})


def _arrow_type_fits(arrow_type: pa.DataType, type_name: str) -> bool:
    checks = {
        "int": pa.types.is_integer,
        "str": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "bool": pa.types.is_boolean,
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "list[str]": lambda t: (pa.types.is_list(t) or pa.types.is_large_list(t))
        and _arrow_type_fits(t.value_type, "str"),
    }
    return checks[type_name](arrow_type)


def _first(mask: pa.ChunkedArray) -> int | None:
    """Index of the first true value of a boolean column, or None."""
    hits = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    return int(hits[0]) if len(hits) else None


def check_table(table: pa.Table, schema: Mapping[str, str], where: str, id_field: str | None = None,
                allowed: Mapping[str, list] | None = None) -> None:
    """Column-wise checks of an Arrow table: the schema's fields and only them, their types, no
    nulls, allowed values, unique ids, at least one row. Errors name `where` and the first bad row."""
    if table.num_rows == 0:
        raise DataError(f"{where}: the split is empty; expected at least one row")
    _check_fields(table.column_names, schema, f"{where} row 0")
    for field, type_name in schema.items():
        column = table.column(field)
        if not _arrow_type_fits(column.type, type_name):
            raise DataError(f"{where} row 0: field {field!r} is {column.type}; expected {type_name}")
        if column.null_count:
            row = _first(pc.is_null(column))
            raise DataError(f"{where} row {row}: field {field!r} is null; expected {type_name}")
    for field, values in (allowed or {}).items():
        bad = _first(pc.invert(pc.is_in(table.column(field), value_set=pa.array(values))))
        if bad is not None:
            value = table.column(field)[bad].as_py()
            raise DataError(f"{where} row {bad}: field {field!r} has unknown value {value!r}; "
                            f"expected one of {list(values)}")
    if id_field in schema:
        _check_unique(table.column(id_field), id_field, where)


def _check_unique(column: pa.ChunkedArray, field: str, where: str) -> None:
    values = column.to_numpy(zero_copy_only=False)
    order = np.argsort(values, kind="stable")
    same = np.flatnonzero(values[order][1:] == values[order][:-1])
    if len(same):
        later = order[same + 1]  # the later row of each duplicate pair; name the earliest such row
        k = int(np.argmin(later))
        first, second = int(order[same[k]]), int(later[k])
        raise DataError(f"{where} row {second}: field {field!r} value {values[second]!r} duplicates "
                        f"row {first}; expected unique ids")
