"""A hub mirror of code-search-net/code_search_net that `hub_mirror=DIR` loads offline.

The hub's main branch serves the corpus as a loading script (code_search_net.py) and one archive per
language, data/<lang>.zip (<lang>/final/jsonl/{train,valid,test}/<lang>_<split>_<n>.jsonl.gz inside),
and `datasets` >= 4 runs no loading script. The harness reads a hub repo as README `configs:` +
parquet, so this turns a download into that layout:

    hf download code-search-net/code_search_net data/ruby.zip --repo-type dataset \\
        --local-dir DIR/code-search-net/code_search_net
    python -m tasks.codesearchnet_mirror DIR/code-search-net/code_search_net

writes ruby/{train,validation,test}-00000-of-00001.parquet with the script's own columns and renaming
(repo -> repository_name, ..., partition -> split_name, url -> func_code_url), rows in file order, the
files of a split in the order of their shard number, and README.md listing each config's splits. A
download of the hub's parquet conversion (`--revision refs/convert/parquet --include "ruby/*"`, files
<config>/<split>/NNNN.parquet) only gets the README. Then: `task=codesearchnet_search_ruby hub_mirror=DIR`.
"""
from __future__ import annotations

import gzip
import json
import re
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tasks.schema import DataError

SPLITS = {"train": "train", "valid": "validation", "test": "test"}   # the archive's -> the hub's
COLUMNS = {  # hub column <- archive field (the loading script's _generate_examples)
    "repository_name": "repo", "func_path_in_repository": "path", "func_name": "func_name",
    "whole_func_string": "original_string", "language": "language", "func_code_string": "code",
    "func_code_tokens": "code_tokens", "func_documentation_string": "docstring",
    "func_documentation_tokens": "docstring_tokens", "split_name": "partition", "func_code_url": "url"}
LISTS = ("func_code_tokens", "func_documentation_tokens")
MEMBER = re.compile(r"(?:^|/)final/jsonl/(train|valid|test)/[^/]*?_(\d+)\.jsonl\.gz$")
MARK = "# written by python -m tasks.codesearchnet_mirror"


def schema() -> pa.Schema:
    return pa.schema([(k, pa.list_(pa.string()) if k in LISTS else pa.string()) for k in COLUMNS])


def convert_zip(archive: Path, out_dir: Path, batch: int = 10_000) -> dict[str, int]:
    """data/<lang>.zip -> <out_dir>/<split>-00000-of-00001.parquet; rows written per split."""
    with zipfile.ZipFile(archive) as zf:
        found: dict[str, list[tuple[int, str]]] = {}
        for name in zf.namelist():
            if m := MEMBER.search(name):
                found.setdefault(SPLITS[m.group(1)], []).append((int(m.group(2)), name))
        if not found:
            raise DataError(f"{archive}: no <lang>/final/jsonl/{{train,valid,test}}/*.jsonl.gz inside; "
                            "expected a CodeSearchNet language archive (data/<lang>.zip of the hub repo)")
        out_dir.mkdir(parents=True, exist_ok=True)
        return {split: _write_split(zf, [n for _, n in sorted(members)],
                                    out_dir / f"{split}-00000-of-00001.parquet", batch)
                for split, members in found.items()}


def _write_split(zf: zipfile.ZipFile, members: list[str], path: Path, batch: int) -> int:
    rows, count = [], 0
    with pq.ParquetWriter(path, schema()) as writer:
        for member in members:
            with zf.open(member) as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
                for n, line in enumerate(lines, 1):
                    rows.append(_row(json.loads(line), f"{zf.filename}:{member}:{n}"))
                    if len(rows) == batch:
                        writer.write_table(pa.Table.from_pylist(rows, schema()))
                        count, rows = count + len(rows), []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema()))
    return count + len(rows)


def _row(obj: dict, where: str) -> dict:
    missing = [field for field in COLUMNS.values() if field not in obj]
    if missing:
        raise DataError(f"{where}: missing field {missing[0]!r}; "
                        f"expected the CodeSearchNet fields {list(COLUMNS.values())}")
    return {column: obj[field] for column, field in COLUMNS.items()}


def configs(repo: Path) -> list[dict]:
    """The card's `configs:` for the parquet under repo: <config>/<split>-*.parquet (this module's)
    or <config>/<split>/*.parquet (the hub's refs/convert/parquet)."""
    out = []
    for config in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "data"):
        files = []
        for split in ("train", "validation", "test"):
            if (config / f"partial-{split}").is_dir():
                raise DataError(f"{config}/partial-{split}: the hub converted only part of this split; "
                                "convert data/<lang>.zip instead")
            if list((config / split).glob("*.parquet")):
                files.append({"split": split, "path": f"{config.name}/{split}/*.parquet"})
            elif list(config.glob(f"{split}-*.parquet")):
                files.append({"split": split, "path": f"{config.name}/{split}-*.parquet"})
        if files:
            out.append({"config_name": config.name, "data_files": files})
    return out


def write_card(repo: Path) -> Path:
    """README.md with `configs:`; a README already there (the hub's script-era card) is kept as README.hub.md."""
    scripts = sorted(p.name for p in repo.glob("*.py"))
    if scripts:
        raise DataError(f"{repo}: {scripts[0]} is a loading script, which datasets >= 4 refuses to load from "
                        "a local directory; remove it (only data/<lang>.zip is needed)")
    found = configs(repo)
    if not found:
        raise DataError(f"{repo}: no parquet under <config>/; expected data/<lang>.zip to convert or the hub's "
                        "refs/convert/parquet files <config>/<split>/*.parquet")
    readme = repo / "README.md"
    if readme.is_file() and MARK not in readme.read_text(encoding="utf-8"):
        readme.rename(repo / "README.hub.md")
    header = yaml.safe_dump({"configs": found}, sort_keys=False)
    readme.write_text(f"---\n{header}---\n{MARK}, from the files beside it.\n", encoding="utf-8")
    return readme


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    repo = Path(args[0]).expanduser()
    for archive in sorted((repo / "data").glob("*.zip")):
        counts = convert_zip(archive, repo / archive.stem)
        print(f"{archive}: " + ", ".join(f"{s} {n:,} rows" for s, n in counts.items()))
    print(f"wrote {write_card(repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
