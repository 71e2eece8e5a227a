"""`python -m harness.contamination task=<t> [task.data_dir=DIR] [contamination.corpus=DIR] ...`:
near-duplicates of a task's test rows in its train (and validation) split and in a corpus directory.

Composed by Hydra from the project's conf/ (conf/contamination.yaml adds the `contamination:` block
to conf/config.yaml), so `task=` and `task.data_dir=` mean what they mean for `python -m harness`.
A row's text is what the task encodes (`Task.encoded_fields`: its templates' and text fields; a
split of training documents: its `text`). MinHash and LSH: harness/contamination_index.py.

Prints readable lines, then one JSON object as the last line; writes the report
`<contamination.out_dir>/<task>-<data digest>.json` (the contaminated test row indices, which
`python -m harness.leaderboard --clean-only` leaves out) and logs it to the configured tracker as a
run tagged `harness.kind=contamination`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import harness  # noqa: F401 -- sets the offline defaults before any Hugging Face import
import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harness.config import register_resolvers
from harness.contamination_index import FIELD_SEP, TestIndex, corpus_files, exact_jaccard, row_text, split_rows

register_resolvers()
TOKENS = r"code tokens \w+|[^\w\s] (identifiers, numbers, each punctuation mark), shingled per field"
SNIPPET = 100


class ContaminationError(ValueError):
    """Bad input to the check (a missing corpus, a split without the task's fields)."""


def report_path(out_dir: str | Path, task: str, digest: str) -> Path:
    return Path(out_dir) / f"{task}-{digest}.json"


def _fields(ds, task, split: str) -> list[str]:
    """The task's encoded fields this split holds (a split of training documents: `text`)."""
    columns = ds.column_names if hasattr(ds, "column_names") else list(ds[0]) if len(ds) else []
    names = [f for f in task.encoded_fields() if f in columns] or (["text"] if "text" in columns else [])
    if not names:
        raise ContaminationError(f"contamination: task {task.name} split {split!r} has none of the fields the "
                                 f"task encodes {task.encoded_fields()} (columns: {columns})")
    return names


def _snippet(text: str) -> str:
    flat = " ".join(text.replace(FIELD_SEP, " | ").split())
    return flat if len(flat) <= SNIPPET else flat[:SNIPPET] + "..."


def check(task, splits: dict, settings: DictConfig) -> tuple[dict, dict[str, dict]]:
    """Counts and matches of every source against the test split: (summary, {source: matches})."""
    test = splits["test"]
    index = TestIndex(settings.threshold, settings.num_perm, settings.shingle)
    index.build(split_rows(test, _fields(test, task, "test")))
    summary: dict[str, Any] = {"test_rows": len(test), "test_rows_without_tokens": index.empty}
    found: dict[str, dict] = {}
    for split in settings.splits:
        if split not in ("train", "validation"):
            raise ContaminationError(f"contamination.splits: {split!r} is not a split compared with test; "
                                     "expected train and/or validation")
        if split not in splits:
            print(f"[contamination] task {task.name} has no {split} split; not compared", flush=True)
            continue
        ds = splits[split]
        found[split], summary[f"{split}_rows"] = index.query(enumerate(split_rows(ds, _fields(ds, task, split))))
        summary[f"{split}_test_near_duplicates"] = len(found[split])
    if settings.corpus is not None:
        root = Path(settings.corpus)
        if not root.is_dir():
            raise ContaminationError(f"contamination.corpus={settings.corpus}: not a directory; expected a folder "
                                     "of source files")
        extensions = list(settings.corpus_extensions) if settings.corpus_extensions else None
        found["corpus"], summary["corpus_files"] = index.query(corpus_files(root, extensions, settings.max_file_bytes))
        summary["corpus_near_duplicates"] = len(found["corpus"])
    return summary, found


def examples(task, splits: dict, found: dict[str, dict], settings: DictConfig) -> list[dict]:
    """A few matches with their exact Jaccard and short snippets (the texts re-read by index)."""
    test = splits["test"]
    names = {s: _fields(splits[s], task, s) for s in found if s != "corpus"}
    names["test"] = _fields(test, task, "test")
    out: list[dict] = []
    for source, matches in found.items():
        for row in sorted(matches)[:max(0, settings.examples - len(out))]:
            match = matches[row]
            text = row_text(test[row], names["test"])
            if source == "corpus":
                other = (Path(settings.corpus) / match.other).read_text(encoding="utf-8", errors="replace")
                where = {"corpus_file": match.other}
            else:
                other = row_text(splits[source][match.other], names[source])
                where = {f"{source}_row": match.other}
            out.append({"source": source, "test_row": row, **where, "estimated_jaccard": round(match.estimated, 4),
                        "exact_jaccard": round(exact_jaccard(text, other, settings.shingle), 4),
                        "test_snippet": _snippet(text), "other_snippet": _snippet(other)})
    return out


def contamination(cfg: DictConfig) -> dict:
    """The whole check of one task: the report (also written to its file and logged)."""
    settings = cfg.contamination
    if not 0 < settings.threshold <= 1:
        raise ContaminationError(f"contamination.threshold={settings.threshold}: expected a Jaccard in (0, 1]")
    task = instantiate(cfg.task, _convert_="all")
    data = task.load_data(task.data_plan(cfg.get("hub_mirror")))
    summary, found = check(task, data.splits, settings)
    dirty = sorted(set().union(*(set(m) for m in found.values()))) if found else []
    report = {"task": task.name, "data_digest": data.digest, "data_source": data.record()["source"],
              "threshold": settings.threshold, "num_perm": settings.num_perm, "shingle": settings.shingle,
              "tokens": TOKENS, "fields": task.encoded_fields(), "corpus": settings.corpus, **summary,
              "share": summary.get("train_test_near_duplicates", 0) / summary["test_rows"],
              "contaminated_test_rows_count": len(dirty), "clean_test_rows": summary["test_rows"] - len(dirty),
              "metric": task.metric, "metric_kwargs": dict(task.metric_kwargs), "syntax_language": task.syntax_language,
              "examples": examples(task, data.splits, found, settings)}
    path = report_path(settings.out_dir, task.name, data.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    lists = {"contaminated_test_rows": dirty,
             "near_duplicates": {s: {str(k): {"other": m.other, "estimated_jaccard": m.estimated}
                                     for k, m in sorted(found[s].items())} for s in found}}
    path.write_text(json.dumps({**report, **lists}, indent=1) + "\n")
    report["report"] = str(path)
    report["mlflow_run_id"] = _log(cfg, report, path)
    return report


def _log(cfg: DictConfig, report: dict, path: Path) -> str | None:
    """An MLflow run tagged as a contamination check (counts as metrics, the report as artifact)."""
    tracker = instantiate(cfg.tracker)
    tracker.start(f"contamination-{report['task']}", {"harness.kind": "contamination", "task": report["task"],
                                                      "data_digest": report["data_digest"]})
    status = "FAILED"
    try:
        tracker.log_params({k: report[k] for k in ("task", "threshold", "num_perm", "shingle", "corpus", "fields")})
        tracker.log_metrics({k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                             and k not in ("threshold", "num_perm", "shingle")})
        tracker.log_artifact(path, "contamination")
        status = "FINISHED"
    finally:
        tracker.end(status)
    return tracker.run_id


def lines(report: dict) -> list[str]:
    out = [f"contamination check of task {report['task']} (data {report['data_digest']}): MinHash num_perm="
           f"{report['num_perm']}, shingles of {report['shingle']} {report['tokens']}, LSH Jaccard threshold "
           f"{report['threshold']}, fields {report['fields']}"]
    for key in sorted(k for k in report if k.endswith("_near_duplicates")):
        source = key.removesuffix("_near_duplicates").removesuffix("_test")
        read = report.get(f"{source}_rows", report.get(f"{source}_files"))
        out.append(f"  {source}: {report[key]} of {report['test_rows']} test rows have a near-duplicate "
                   f"among {read} {source} {'files' if source == 'corpus' else 'rows'}")
    out.append(f"  clean test rows: {report['clean_test_rows']}; report: {report['report']}")
    for ex in report["examples"]:
        other = ex.get("corpus_file", next((v for k, v in ex.items() if k.endswith("_row") and k != "test_row"), None))
        out.append(f"  e.g. test row {ex['test_row']} ~ {ex['source']} {other}: Jaccard est. "
                   f"{ex['estimated_jaccard']}, exact {ex['exact_jaccard']}: {ex['test_snippet'][:60]!r}")
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="contamination")
def main(cfg: DictConfig) -> None:
    from tasks.schema import DataError

    try:
        report = contamination(cfg)
    except (ContaminationError, DataError, FileNotFoundError) as err:
        print(str(err).splitlines()[0] if str(err) else repr(err), file=sys.stderr, flush=True)
        sys.exit(2)
    print("\n".join(lines(report)), flush=True)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
