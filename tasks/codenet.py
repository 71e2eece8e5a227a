"""Project CodeNet (IBM/Project_CodeNet), read in its own layout: problem classification and
cross-language similar-code retrieval (MAP@R, as POJ-104).

The layout (IBM/Project_CodeNet README.md, "Directory structure and naming convention" and
"Relationships among the metadata and data"; tools/aggregation-scripts/dataset_verify.sh):
    <root>/data/<problem>/<language>/<submission_id>.<filename_ext>
    <root>/metadata/problem_list.csv   id,name,dataset,time_limit,memory_limit,rating,tags,complexity
    <root>/metadata/<problem>.csv      submission_id,problem_id,user_id,date,language,original_language,
                                       filename_ext,status,cpu_time,memory,code_size,accuracy

A benchmark subset (Project_CodeNet_C++1000, _C++1400, _Python800, _Java250) is a folder
<subset>/<problem>/<submission file>, without metadata (TokenizeImportDS.py of
model-experiments/token-based-similarity-classification reads it so), taken as IBM published it.

Splits (`split_by`): "problem" puts every problem in one split (retrieval: TokensSimilDS.py tests on
problems unseen in training); "submission" cuts each problem's submissions (stratified, as
balancedTestTrain/balancedValTrain of TokensClassifDS.py); 64/16/20 is their run scripts' --testpart
0.2 --valpart 0.2. Orders: sha256 of the ids (tasks.splits.bucket), a fixed seed; the same everywhere.
Rows stream one problem at a time into one Arrow dataset (cached by the selection and the files'
stamp); the splits are index selections of it, computed with pyarrow and numpy.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tasks.base import Task
from tasks.classification import ClassificationTask
from tasks.retrieval import RetrievalTask
from tasks.schema import DataError, arrow_features
from tasks.sources import Origin, Plan, file_stamp
from tasks.splits import bucket, split_by_rank

HEADER = ("submission_id,problem_id,user_id,date,language,original_language,filename_ext,status,"
          "cpu_time,memory,code_size,accuracy")
NEEDED = ("submission_id", "language", "filename_ext", "status")
LAYOUT = ("<root>/data/<problem>/<language>/<submission_id>.<ext>, <root>/metadata/problem_list.csv and "
          "<root>/metadata/<problem>.csv (Project_CodeNet.tar.gz unpacked)")
SUBSET_LAYOUT = "<subset>/<problem>/<submission files> (e.g. Project_CodeNet_Java250.tar.gz unpacked)"
NOT_COMPARABLE = ("CodeNet: the splits are this harness's (stable hash of the ids), not the random "
                  "splits of IBM's published experiments")


@dataclass
class CodeNetData(Task):
    """What both CodeNet tasks read: which submissions, and how they are split."""
    subset: str | None = None                       # a benchmark folder name; None: the full dataset
    subsets: dict = field(default_factory=dict)     # benchmark folder -> the language of its files
    statuses: Sequence[str] | None = ("Accepted",)  # metadata `status` kept; None: every status
    languages: Sequence[str] | None = None          # metadata `language` (= data/ folder) kept; None: all
    problems: Sequence[str] | None = None           # problem ids kept; None: all
    min_per_problem: int = 2                        # a problem with fewer selected submissions is left out
    max_per_problem: int | None = None              # the first N of a problem in hash order; None: all
    max_problems: int | None = None                 # the first N problems in hash order; None: all
    split_by: str = "problem"                       # problem | submission
    fractions: dict = field(default_factory=lambda: {"train": 0.64, "validation": 0.16, "test": 0.2})
    shuffle: bool = True                            # seeded shuffle of each split (else grouped by problem)
    seed: int = 123
    decode_errors: str = "replace"                  # bytes that are not UTF-8: replace | ignore | strict

    # ---- where the data is (cheap: listings and stats, no source file is read) ----------------
    def data_plan(self, hub_mirror: str | None = None) -> Plan:
        if self.split_by not in ("problem", "submission"):
            raise DataError(f"task {self.name}: split_by={self.split_by!r}; expected 'problem' or 'submission'")
        try:
            codecs.lookup_error(self.decode_errors)
        except LookupError:
            raise DataError(f"task.decode_errors={self.decode_errors!r}: unknown; expected replace, ignore "
                            "or strict") from None
        folder, problems = self._locate()
        what = f"CodeNet benchmark {self.subset}" if self.subset else "Project CodeNet"
        origin = Origin(str(folder.resolve()), folder, stamp=self._stamp(folder, problems))
        return Plan("files", f"{what} under {folder} ({len(problems)} problems listed, split by {self.split_by})",
                    {s: {"from": s, "origin": "codenet"} for s in self.fractions}, {"codenet": origin},
                    comparable=False, why_not_comparable=NOT_COMPARABLE)

    def _root(self) -> Path:
        if not self.data_dir:
            raise DataError(f"task {self.name}: task.data_dir is not set; expected a CodeNet root: {LAYOUT}, "
                            f"or with task.subset=NAME the folder that holds {SUBSET_LAYOUT}")
        root = Path(self.data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"task.data_dir={root}: not a directory; expected a CodeNet root: {LAYOUT}")
        return root

    def _locate(self) -> tuple[Path, list[str]]:
        """The folder read and its problem ids (sorted), after `problems`."""
        root = self._root()
        if self.subset:
            if self.subset not in self.subsets:
                raise DataError(f"task.subset={self.subset}: not a known benchmark; expected one of "
                                f"{sorted(self.subsets)} (task.subsets maps a folder to its language)")
            folder = _find_subset(root, self.subset)
            found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
            if not found:
                raise DataError(f"{folder}: no problem folder; expected {SUBSET_LAYOUT}")
        else:
            folder, found = root, _problem_list(root)
        if self.problems:
            unknown = sorted(set(self.problems) - set(found))
            if unknown:
                raise DataError(f"task.problems: {unknown[:5]} not in {folder}; it has {len(found)} problems")
            found = [p for p in found if p in set(self.problems)]
        return folder, found

    def _stamp(self, folder: Path, problems: list[str]) -> list:
        """Cheap identity: a benchmark's folders (name, file count, mtime); the full dataset's metadata
        CSVs (name, size, mtime), not 14M source files, which CodeNet never changes."""
        if self.subset:
            return [[p, len(os.listdir(folder / p)), (folder / p).stat().st_mtime_ns] for p in problems]
        meta = folder / "metadata"
        files = [meta / "problem_list.csv", *(meta / f"{p}.csv" for p in problems)]
        return file_stamp([f for f in files if f.is_file()], meta)

    # ---- the rows --------------------------------------------------------------------------------
    def load_data(self, plan, tokenizer=None):
        from tasks.loading import TaskData, arrow_from_generator

        folder, problems = self._locate()
        full = not self.subset  # a benchmark subset has no metadata to filter on
        settings = json.dumps({
            "folder": str(folder), "problems": problems, "language": None if full else self.subsets[self.subset],
            "statuses": list(self.statuses) if full and self.statuses else None,
            "languages": list(self.languages) if full and self.languages else None,
            "min": self.min_per_problem, "max": self.max_per_problem, "max_problems": self.max_problems,
            "errors": self.decode_errors}, sort_keys=True)
        key = hashlib.sha256((settings + plan.identity).encode()).hexdigest()[:16]
        rows = arrow_from_generator(_rows, arrow_features(self.schema), settings, key)  # every chosen file, once
        where = f"task {self.name} ({folder})"
        parts = split_indices(rows.data.table.column("problem"), self.fractions, self.split_by, where)
        if self.shuffle:
            parts = {s: np.random.default_rng([self.seed, i]).permutation(idx)
                     for i, (s, idx) in enumerate(parts.items())}
        return TaskData({s: rows.select(idx) for s, idx in parts.items()}, plan)


def split_indices(problem_column, fractions: dict, split_by: str, where: str) -> dict[str, np.ndarray]:
    """Row indices of each split. Rows come grouped by problem, each problem's in hash order."""
    encoded = problem_column.combine_chunks().dictionary_encode()
    codes, names = np.asarray(encoded.indices), encoded.dictionary.to_pylist()
    if split_by == "problem":
        try:
            chosen = split_by_rank([{"problem": p} for p in names], "problem", fractions)
        except ValueError as err:
            raise DataError(f"{where}: {err} (problems; lower task.min_per_problem or add problems)") from None
        index = {p: i for i, p in enumerate(names)}
        of_problem = np.empty(len(names), dtype=np.int64)
        for s, part in enumerate(chosen.values()):
            of_problem[[index[r["problem"]] for r in part]] = s
        row_split = of_problem[codes]
    else:
        row_split = _stratified(codes, names, [fractions[s] for s in list(fractions)[1:]], where)
    return {s: np.flatnonzero(row_split == i) for i, s in enumerate(fractions)}


def _stratified(codes: np.ndarray, names: list, held: list[float], where: str) -> np.ndarray:
    """Each problem's submissions, in their hash order, cut into [first split, then the others]; every
    later split gets max(1, floor(n * fraction)) of them (as TokensClassifDS.balancedTestTrain)."""
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    counts = np.stack([np.maximum(1, np.floor(sizes * f + 1e-9).astype(np.int64)) for f in held])
    first = sizes - counts.sum(axis=0)
    if (first < 1).any():
        g = int(np.argmax(first < 1))
        raise DataError(f"{where}: problem {names[codes[starts[g]]]} has {sizes[g]} submissions, too few for "
                        f"{len(held) + 1} splits at these fractions; raise task.min_per_problem")
    position = np.arange(len(codes)) - np.repeat(starts, sizes)
    ends = np.cumsum(np.vstack([first, counts]), axis=0)[:-1]  # where each split but the last ends
    split = np.zeros(len(codes), dtype=np.int64)
    for end in ends:
        split += position >= np.repeat(end, sizes)
    return split


def _find_subset(root: Path, subset: str) -> Path:
    """The benchmark folder: data_dir itself, data_dir/<subset>, or under data_dir/derived/ (the README:
    `derived` holds the benchmarks)."""
    candidates = [root] if root.name == subset else []
    candidates += [root / subset, root / "derived" / subset]
    if (root / "derived").is_dir():
        candidates += sorted(p / subset for p in (root / "derived").iterdir() if p.is_dir())
    for path in candidates:
        if path.is_dir():
            return path
    raise DataError(f"task.subset={subset}: no folder {root / subset} (nor under {root / 'derived'}); "
                    f"expected {SUBSET_LAYOUT} in task.data_dir={root}")


def _problem_list(root: Path) -> list[str]:
    """Problem ids of metadata/problem_list.csv (column `id`), after checking the layout."""
    path = root / "metadata" / "problem_list.csv"
    if not (root / "data").is_dir() or not path.is_file():
        missing = root / "data" if not (root / "data").is_dir() else path
        inner = root / "Project_CodeNet"  # the tarball's own top folder
        hint = f"; did you mean task.data_dir={inner}?" if inner.is_dir() else ""
        raise DataError(f"task.data_dir={root}: no {missing}; expected the CodeNet layout {LAYOUT}{hint}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "id" not in (reader.fieldnames or []):
            raise DataError(f"{path}: header {reader.fieldnames}; expected a column 'id' "
                            "(id,name,dataset,time_limit,memory_limit,rating,tags,complexity)")
        return sorted({row["id"] for row in reader if row["id"]})


def _metadata_entries(root: Path, problem: str, statuses, languages) -> Iterator[tuple]:
    """(submission id, language, status, file, where) of a problem's selected metadata rows."""
    path = root / "metadata" / f"{problem}.csv"
    if not path.is_file():  # listed without submissions (the README: 5 of the 4053 problems are empty)
        return
    with open(path, newline="", encoding="utf-8") as handle:  # newline="": DOS line endings too
        reader = csv.DictReader(handle)
        missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r} in its header; expected {HEADER}")
        for line, row in enumerate(reader, start=2):
            if (statuses and row["status"] not in statuses) or (languages and row["language"] not in languages):
                continue
            sid = row["submission_id"]
            file = root / "data" / problem / row["language"] / f"{sid}.{row['filename_ext']}"
            yield sid, row["language"], row["status"], file, f"{path}:{line}"


def _subset_entries(folder: Path, problem: str, language: str) -> Iterator[tuple]:
    for entry in os.scandir(folder / problem):
        if entry.is_file() and not entry.name.startswith("."):
            yield entry.name.rsplit(".", 1)[0], language, "", Path(entry.path), entry.path


def _read(file: Path, errors: str, where: str) -> str:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{where}: no file {file}; expected {LAYOUT}") from None
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        raise DataError(f"{file}: bytes at offset {err.start} are not UTF-8; expected UTF-8 source "
                        "(task.decode_errors=replace reads them as U+FFFD)") from None


def _rows(settings: str) -> Iterator[dict]:
    """The selected submissions, problem by problem (problems and submissions in hash order)."""
    s = json.loads(settings)
    folder, kept = Path(s["folder"]), 0
    for problem in sorted(s["problems"], key=lambda p: (bucket(p), p)):
        entries = (_subset_entries(folder, problem, s["language"]) if s["language"]
                   else _metadata_entries(folder, problem, s["statuses"], s["languages"]))
        chosen = sorted(entries, key=lambda e: (bucket(e[0]), e[0]))[: s["max"]]
        if len(chosen) < s["min"]:
            continue
        for sid, language, status, file, where in chosen:
            yield {"id": sid, "problem": problem, "language": language, "status": status,
                   "code": _read(file, s["errors"], where)}
        kept += 1
        if s["max_problems"] and kept >= s["max_problems"]:
            break
    if not kept:
        raise DataError(f"{folder}: no problem has {s['min']} submissions with status in {s['statuses']} and "
                        f"language in {s['languages']} (None: any); expected "
                        f"{SUBSET_LAYOUT if s['language'] else LAYOUT}")


@dataclass
class CodeNetClassifyTask(ClassificationTask, CodeNetData):
    """Which problem a submission solves; the classes are the problems of the data (sorted)."""
    labels: Sequence | None = None   # set when the data is loaded: the problems it holds
    label_field: str = "problem"
    text_fields: Sequence[str] = ("code",)
    split_by: str = "submission"

    def load_data(self, plan, tokenizer=None):
        data = super().load_data(plan, tokenizer)
        self.labels = sorted(set().union(*(rows.unique(self.label_field) for rows in data.splits.values())))
        return data

    def model_kwargs(self) -> dict:
        if self.labels is None:  # the number of classes is the data's (read once, then cached Arrow)
            self.load_data(self.data_plan())
        return super().model_kwargs()


@dataclass
class CodeNetRetrievalTask(RetrievalTask, CodeNetData):
    """Rank every other submission of the test problems; those of the same problem (any language)
    are the relevant ones (MAP@R, as POJ-104)."""
    group_field: str | None = "problem"
    answer_field: str = "id"
    top_k: int | None = None
    shuffle: bool = False
