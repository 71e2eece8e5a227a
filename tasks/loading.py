"""A task's splits as Arrow datasets (memory-mapped, never a Python list of every row), validated,
made by the task's protocol from the sources a Plan names; and the `data` record of result.json.

JSONL files stream through the row validator into Arrow once (cached by path, size and mtime); hub
repos load with `datasets.load_dataset(<local dir>, <config>)` and are checked column by column.
Each conversion runs under its key's lock (harness.files.locked): processes that want the same rows
at once (torchrun ranks, nodes sharing HARNESS_CACHE_DIR) convert them once and share the result.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.env import cache_dir
from harness.files import locked
from tasks.protocol import build, sources_of, to_documents
from tasks.schema import DataError, arrow_features, check_table, iter_jsonl
from tasks.sources import Plan


@dataclass
class TaskData:
    splits: dict[str, Any]                        # split -> datasets.Dataset
    plan: Plan
    documents: frozenset = field(default_factory=frozenset)  # splits of training documents {text}
    details: dict[str, Any] = field(default_factory=dict)   # more of result.json `data` (a stream's record)

    @property
    def digest(self) -> str:
        return self.plan.digest

    def record(self) -> dict[str, Any]:
        """result.json `data`: what was read, at which revision, split sizes, comparability."""
        origins = list(self.plan.origins.values())
        return {"source": [o.name for o in origins], "revision": {o.name: o.revision for o in origins},
                "splits": {s: len(ds) for s, ds in self.splits.items()},
                "comparable": self.plan.comparable, "why_not_comparable": self.plan.why_not_comparable,
                "kind": self.plan.kind, **self.details}


def load(task, plan: Plan) -> TaskData:
    """Every split of the plan, through the protocol; required splits must be there and non-empty,
    and a test split whose references are all empty is refused (its gold is withheld)."""
    raw: dict = {}
    splits = {}
    for split, spec in plan.specs.items():
        schema = spec.get("schema") or task.schema
        own = schema == task.schema
        origin = plan.origins[spec["origin"]]
        parts = [_source_split(origin, name, schema, task.id_field if own or task.id_field in schema else None,
                               task.allowed_values if own else {}, bool(spec.get("project")), raw)
                 for name in sources_of(spec)]
        where = f"task {task.name} split {split!r} ({origin.name})"
        ds = build(parts, spec, task.id_field, where, cache_dir("datasets") / "selected")
        if spec.get("documents"):
            key = hashlib.sha256(f"{ds._fingerprint}{spec['documents']}".encode()).hexdigest()[:16]
            with locked(cache_dir("datasets") / "documents" / key):  # its map's cache file, made once
                ds = to_documents(ds, spec["documents"], key)
        splits[split] = ds
    for name in task.required_splits:
        if name not in splits or len(splits[name]) == 0:
            raise DataError(f"task {task.name}: split {name!r} is missing or empty ({plan.why}); "
                            f"expected {name}.jsonl with at least one row")
    data = TaskData(splits, plan, plan.documents)
    _refuse_empty_references(task, data)
    return data


def _source_split(origin, name: str, schema, id_field, allowed, project: bool, raw: dict):
    """One source split (hub split or JSONL file), validated against the schema."""
    if origin.config is None:
        return jsonl_dataset(origin.path / f"{name}.jsonl", schema, id_field, allowed, project)
    if origin.name not in raw:
        raw[origin.name] = _load_hub_dir(origin)
    found = raw[origin.name]
    if name not in found:
        raise DataError(f"{origin.name}: no split {name!r}; the dataset has {sorted(found)}")
    ds = found[name]
    if project:
        ds = ds.select_columns(list(schema))
    check_table(ds.data.table, schema, f"{origin.name}[{name}]", id_field, allowed)
    return ds


def _load_hub_dir(origin):
    key = hashlib.sha256(json.dumps([str(origin.path), origin.config, origin.stamp], default=str).encode())
    with locked(cache_dir("datasets") / "hub" / key.hexdigest()[:16]):  # converted to Arrow by one process
        return _read_hub_dir(origin)


def _read_hub_dir(origin):
    import datasets

    try:
        return datasets.load_dataset(str(origin.path), origin.config, cache_dir=str(cache_dir("datasets")))
    except (datasets.exceptions.DatasetGenerationError, ValueError, FileNotFoundError) as err:
        raise DataError(f"{origin.name}: cannot load {origin.path} as a hub dataset ({type(err).__name__}: "
                        f"{err}); expected README.md `configs:` and the config's parquet files") from None
    except RuntimeError as err:  # "Dataset scripts are no longer supported": a loading-script repo
        if "script" not in str(err).lower():
            raise
        raise DataError(f"{origin.name}: {origin.path} is a loading-script dataset, which datasets >= 4 cannot "
                        f"run ({err}); convert its files to parquet (for code_search_net: python -m "
                        f"tasks.codesearchnet_mirror {origin.path})") from None
    except datasets.utils.info_utils.NonMatchingSplitsSizesError as err:
        raise DataError(f"{origin.name}: the files under {origin.path} do not hold the rows its dataset "
                        f"card lists (an incomplete download?): {err}") from None


def jsonl_dataset(path: Path, schema, id_field, allowed, project: bool = False):
    """A JSONL file as an Arrow dataset, validated row by row on its way in; cached by the file's
    path, size and mtime and the schema, so a second cell reads it memory-mapped in milliseconds."""
    if not path.is_file():
        raise DataError(f"{path}: missing; expected a JSONL file of the split")
    st = path.stat()
    settings = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, dict(schema), id_field,
                           allowed or {}, project], sort_keys=True, default=str)
    key = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return arrow_from_generator(_validated_rows, arrow_features(schema), settings, key)


def arrow_from_generator(generator, features, settings: str, key: str):
    """The rows of `generator(settings)` as an Arrow dataset cached under `key`, written once by one
    process under the key's lock (harness.files.locked) while any other that wants it waits; datasets
    writes it into a `.incomplete` folder it renames when done, so a killed build is never read."""
    from datasets import Dataset

    with locked(cache_dir("datasets") / "generator" / key), unwrap_generation_error():
        return Dataset.from_generator(generator, features=features, cache_dir=str(cache_dir("datasets")),
                                      fingerprint=key, gen_kwargs={"settings": settings})


@contextlib.contextmanager
def unwrap_generation_error():
    """A DataError raised while `datasets` writes Arrow reaches the user as itself."""
    from datasets.exceptions import DatasetGenerationError

    try:
        yield
    except DatasetGenerationError as err:
        if isinstance(err.__cause__, DataError):
            raise err.__cause__ from None
        raise


def _validated_rows(settings: str):
    path, _, _, schema, id_field, allowed, project = json.loads(settings)
    yield from iter_jsonl(Path(path), schema, id_field, allowed, project)


def _refuse_empty_references(task, data: TaskData) -> None:
    test = data.splits.get("test")
    if test is None or "test" in data.documents:
        return
    refs = task.references(test)
    if refs and all(isinstance(r, (str, list)) and len(r) == 0 for r in refs):
        raise DataError(f"task {task.name}: every reference of the test split ({len(refs):,} rows, "
                        f"{data.plan.why}) is empty: its gold is withheld and it cannot be scored; "
                        "test on a split with references (source.splits.test)")
