"""nl2code: aiXcoder's AixBench (github.com/aixcoder-plugin/nl2code-dataset), natural language in, a
Java method out; a test set only (175 autotest rows, 161 manual rows; no train split, no gold code).

The test split is the benchmark's own JSONL file (`source.benchmark.file`, format in
metrics/aixbench.py), read from `task.data_dir`: a checkout of the repository, or a folder holding
the file. It is never shipped here. The model trains on CONCODE's NL -> Java methods (`source.splits`
from the hub, `source.shipped` offline), the nearest published training set. A benchmark row becomes
the task's {id, nl, code}: id = task_id, nl = `input_template` on the row (`nl_template` where the
row has no signature, as in the manual set), code = its `code` if it has one, else "" (no reference:
the metric then scores syntax validity only). A `task.data_dir` holding train/validation/test.jsonl
in the task's schema is read as every task reads it (tasks.sources).
"""
from __future__ import annotations

import dataclasses
import subprocess
from dataclasses import dataclass
from pathlib import Path

from metrics.aixbench import read_rows
from metrics.formats import FormatError
from tasks.generation import GenerationTask
from tasks.protocol import clean, sources_of
from tasks.schema import DataError, arrow_features
from tasks.sources import SPLITS, Origin, Plan, file_stamp, plan

BENCHMARK = "benchmark"   # the origin key of the test split


@dataclass
class NL2CodeTask(GenerationTask):
    input_template: str = "{raw_nl} concode_field_sep {signature}"  # rows with a signature
    nl_template: str = "{raw_nl}"                                   # rows without one

    # ---- where the rows are ---------------------------------------------------------------------
    def data_plan(self, hub_mirror: str | None = None) -> Plan:
        root = Path(self.data_dir).expanduser() if self.data_dir else None
        if root is not None and any((root / f"{s}.jsonl").exists() for s in SPLITS):
            return super().data_plan(hub_mirror)   # DIR/{train,validation,test}.jsonl, the task's schema
        bench = self.source["benchmark"]
        path = self._benchmark_file(root, bench)
        self._refuse_test_rows(path)
        base = plan(dataclasses.replace(self, data_dir=None), hub_mirror)  # CONCODE: train, validation
        origin = Origin(f"{bench['repo']}:{bench['file']}", path.parent, revision=_git_head(root),
                        stamp=file_stamp([path], path.parent))
        caveats = [bench["why_not_comparable"], base.why_not_comparable]
        return dataclasses.replace(
            base, why=f"{base.why}; test: {path} (task.data_dir)",
            specs={**base.specs, "test": {"from": path.stem, "origin": BENCHMARK}},
            origins={**base.origins, BENCHMARK: origin}, comparable=False,
            why_not_comparable="; ".join(c for c in caveats if c))

    def _benchmark_file(self, root: Path | None, bench: dict) -> Path:
        where = (f"a checkout of {bench['repo']} (commit {bench['commit']}) or a folder holding "
                 f"{Path(bench['file']).name}")
        if root is None:
            raise DataError(f"task {self.name}: its test rows, the {bench['repo']} benchmark, are not shipped "
                            f"(data under C-UDA); pass task.data_dir=DIR, {where}")
        tried = [root / bench["file"], root / Path(bench["file"]).name]
        for path in tried:
            if path.is_file():
                return path
        raise DataError(f"task.data_dir={root}: no {bench['file']}; expected {where} (looked for "
                        f"{', '.join(map(str, tried))})")

    def _refuse_test_rows(self, path: Path) -> None:
        """The benchmark's rows are the test split and only it: never trained or tuned on."""
        configured = [self.source.get("splits") or {}, (self.source.get("shipped") or {}).get("splits") or {}]
        for split, spec in ((k, v) for specs in configured for k, v in specs.items() if v is not None):
            if split == "test":
                raise DataError(f"task {self.name}: the source configures a test split (from "
                                f"{spec['from']!r}), but the test split is the benchmark file {path}; set it to null")
            if path.stem in sources_of(clean(spec)):
                raise DataError(f"task {self.name}: split {split!r} would be drawn from {path.stem}, the "
                                "benchmark's test rows; a model is never trained or tuned on them")

    # ---- the rows -------------------------------------------------------------------------------
    def load_data(self, plan: Plan, tokenizer=None):
        from tasks.loading import TaskData, load

        if BENCHMARK not in plan.origins:
            return super().load_data(plan, tokenizer)
        rest = dataclasses.replace(plan, specs={k: v for k, v in plan.specs.items() if k != "test"},
                                   origins={k: v for k, v in plan.origins.items() if k != BENCHMARK})
        trained = dataclasses.replace(self, required_splits=tuple(s for s in self.required_splits if s != "test"))
        data = load(trained, rest)
        path = plan.origins[BENCHMARK].path / f"{plan.specs['test']['from']}.jsonl"
        return TaskData({**data.splits, "test": self.benchmark_rows(path)}, plan, data.documents)

    def benchmark_rows(self, path: Path):
        """The benchmark file as the task's rows (an Arrow dataset); bad rows are a DataError."""
        from datasets import Dataset

        try:
            rows = read_rows(path, ("task_id", "raw_nl"))
        except FormatError as err:
            raise DataError(str(err)) from None
        with_code = [bool(r.get("code", "").strip()) for r in rows]
        if any(with_code) and not all(with_code):
            other = rows[with_code.index(not with_code[0])]
            has, lacks = (rows[0], other) if with_code[0] else (other, rows[0])
            raise DataError(f"{path}: task_id {lacks['task_id']} has no reference `code` while task_id "
                            f"{has['task_id']} has one; expected a reference method in every row or in none")
        mapped = [{"id": r["task_id"], "nl": self.render_input(r), "code": r.get("code", "")} for r in rows]
        return Dataset.from_list(mapped, features=arrow_features(self.schema))

    def render_input(self, row: dict) -> str:
        template = self.input_template if "signature" in row else self.nl_template
        return template.format(**row).strip()

    def write_predictions(self, rows, predictions: list[str], out_dir: Path):
        """The official files, plus prediction.jsonl in the benchmark's own format ({task_id, code} per
        line), which its predictionHelper turns into the classes its Java unit tests run."""
        import json

        from tasks.base import column

        files = super().write_predictions(rows, predictions, out_dir)
        path = out_dir / "prediction.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for key, code in zip(column(rows, self.id_field), predictions):
                f.write(json.dumps({"task_id": key, "code": code}, ensure_ascii=False) + "\n")
        return {**files, "benchmark_predictions": path}


def _git_head(root: Path | None) -> str | None:
    """The commit of a git checkout (the benchmark's revision), else None."""
    if root is None or not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
