"""Where a streamed corpus comes from, as documents {text, path, repo, language, license, size}.

Two kinds, both `datasets.IterableDataset`s, so nothing is downloaded in full or read ahead, and
both resumable from `state_dict()`:

- a hub dataset read with `datasets` streaming: codeparrot/github-code, bigcode/the-stack, or any
  dataset of parquet files with a text column and a path or language column (`task.stream`: the
  repo, its `data_files` patterns, and which column is which). `hub_mirror=DIR` streams the same
  files from DIR/<owner>/<name> offline; online they stream from the hub; offline without a mirror
  is an error (a stream has no local cache).
- a local folder of repositories in PolyCoder's layout (`task.data_dir`): <root>/<repository>/...
  /<file>, each file's language from its extension (`task.stream.extensions`). The stream is
  sharded by repository, in sorted order, and files are read one at a time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from tasks.schema import DataError
from tasks.sources import Origin, Plan, file_stamp, local_dir_revision, offline

FIELDS = ("text", "path", "repo", "language", "license", "size")


def data_files(stream: Mapping[str, Any], languages: list[str]) -> list[str]:
    """The stream's file patterns; `{language}` in a pattern gives one pattern per wanted language
    (the-stack keeps each language in a folder of its own)."""
    patterns = list(stream.get("data_files") or [])
    if not patterns:
        raise DataError(f"task.stream.hub={stream['hub']}: give task.stream.data_files (parquet file patterns)")
    out = []
    for pattern in patterns:
        if "{language}" in pattern:
            if not languages:
                raise DataError(f"task.stream.data_files {pattern!r} has one folder per language: "
                                "set task.languages=[...]")
            out += [pattern.format(language=lang) for lang in languages]
        else:
            out.append(pattern)
    return out


def language_by_folder(stream: Mapping[str, Any]) -> bool:
    return any("{language}" in p for p in stream.get("data_files") or [])


def stream_plan(task, hub_mirror: str | None) -> Plan:
    """The plan of a streamed corpus: cheap (file names and sizes, or the hub revision)."""
    stream = task.stream
    specs = {split: {"from": split, "origin": "stream"} for split in ("train", "validation", "test")}
    why_not = "a streamed corpus of your choice: there is no published result to compare with"
    if not stream.get("hub"):
        if not task.data_dir:
            raise DataError(f"task {task.name}: task.data_dir is not set; expected a folder of repositories "
                            "(<root>/<repository>/.../<source file>)")
        root = Path(task.data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"task {task.name}: task.data_dir={task.data_dir!r} is not a directory; expected a "
                            "folder of repositories (<root>/<repository>/.../<source file>)")
        repos = sorted(p for p in root.iterdir() if p.is_dir())
        if not repos:
            raise DataError(f"task {task.name}: {root} has no repository folders; expected <root>/<repository>/...")
        stamp = [[p.name, p.stat().st_mtime_ns] for p in repos]  # cheap: no walk over every file
        origin = Origin(str(root.resolve()), root, stamp=stamp)
        return Plan("stream", f"repositories under {root} ({len(repos)} folders), streamed", specs,
                    {"stream": origin}, comparable=False, why_not_comparable=why_not, documents=frozenset({"train"}))
    repo, patterns = stream["hub"], data_files(stream, list(task.languages))
    if hub_mirror:
        path = Path(hub_mirror).expanduser() / repo
        files = _mirror_files(path, patterns, f"hub_mirror={hub_mirror}: {repo}")
        revision = local_dir_revision(path, "README.md")
        origin = Origin(repo, path, None, revision, revision or file_stamp(files, path, mtime=False))
        where = f"hub mirror {hub_mirror}"
    elif offline():
        raise DataError(f"task {task.name}: {repo} is streamed, and streaming needs the hub "
                        "(HF_DATASETS_OFFLINE=0) or a local copy (hub_mirror=DIR holding "
                        f"{repo}/{patterns[0]}); offline there is nothing to stream")
    else:
        revision = stream.get("revision") or _hub_revision(repo)
        origin = Origin(repo, Path(repo), None, revision, revision)
        where = "the Hugging Face hub"
    return Plan("stream", f"{repo}@{(origin.revision or 'local files')[:12]} {patterns} streamed from {where}",
                specs, {"stream": origin}, comparable=False, why_not_comparable=why_not, documents=frozenset({"train"}))


def _mirror_files(path: Path, patterns: list[str], where: str) -> list[Path]:
    files = sorted({f for p in patterns for f in path.glob(p) if f.is_file()})
    if not files:
        raise DataError(f"{where}: no file matches {patterns} under {path} (expected the hub's layout, as "
                        f"`hf download REPO --repo-type dataset --local-dir {path}` writes it)")
    return files


def _hub_revision(repo: str) -> str | None:
    from huggingface_hub import HfApi

    return HfApi().dataset_info(repo).sha


def open_stream(task, plan: Plan, max_bytes: int):
    """The documents of the plan as an IterableDataset of {text, path, repo, language, license,
    size}; text is None for a file over max_bytes (never read)."""
    stream, origin = task.stream, plan.origins["stream"]
    if not stream.get("hub"):
        return _repo_stream(origin.path, dict(stream.get("extensions") or {}), max_bytes)
    from datasets import load_dataset

    patterns = data_files(stream, list(task.languages))
    if origin.path.is_dir():  # a mirror: the same parquet files, local
        files = [str(f) for f in _mirror_files(origin.path, patterns, str(origin.path))]
        ds = load_dataset("parquet", data_files=files, split="train", streaming=True)
    else:
        ds = load_dataset(origin.name, data_files=patterns, split="train", streaming=True, revision=origin.revision)
    columns = {f: stream.get(f"{f}_field") for f in FIELDS}
    if not columns["text"]:
        raise DataError(f"task.stream.text_field: which column of {origin.name} holds the text?")
    return ds.map(_normalise, fn_kwargs={"columns": columns, "source": origin.name}, remove_columns=ds.column_names)


def _normalise(row: dict, columns: Mapping[str, str | None], source: str) -> dict:
    out: dict[str, Any] = {}
    for name, column in columns.items():
        if column and column not in row:
            raise DataError(f"{source}: no column {column!r} (task.stream.{name}_field); it has {sorted(row)}")
        out[name] = row[column] if column else None
    licence = out["license"]
    out["license"] = [str(x) for x in licence] if isinstance(licence, (list, tuple)) else (
        [] if licence is None else [str(licence)])
    out["size"] = int(out["size"]) if out["size"] is not None else len((out["text"] or "").encode("utf-8"))
    out["path"] = str(out["path"]) if out["path"] is not None else None
    return out


def _repo_stream(root: Path, extensions: Mapping[str, str], max_bytes: int):
    from datasets import IterableDataset

    if not extensions:
        raise DataError("task.stream.extensions: map file extensions to languages ({'.py': 'Python', ...})")
    repos = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = IterableDataset.from_generator(_repo_files, gen_kwargs={"repos": repos, "root": str(root),
                                                                    "extensions": dict(extensions)})
    return files.map(_read, fn_kwargs={"root": str(root), "max_bytes": max_bytes})


def _repo_files(repos: list[str], root: str, extensions: dict) -> Iterator[dict]:
    """Every source file of the repositories, in sorted order (path, repo, language, size); cheap:
    nothing is read, so resuming inside a repository skips files without opening them."""
    for repo in repos:
        for folder, dirs, names in os.walk(Path(root) / repo):
            dirs.sort()
            for name in sorted(names):
                language = extensions.get(Path(name).suffix.lower())
                full = Path(folder) / name
                if language is None or not full.is_file():
                    continue
                yield {"path": full.relative_to(root).as_posix(), "repo": repo, "language": language,
                       "license": [], "size": full.stat().st_size}


def _read(row: dict, root: str, max_bytes: int) -> dict:
    text = None
    if row["size"] <= max_bytes:
        try:
            text = (Path(root) / row["path"]).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            text = None  # not UTF-8: dropped, and counted (stream record `dropped.not_utf8`)
    return {**row, "text": text}
