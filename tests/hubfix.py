"""Tiny repos in the layout the Hugging Face hub serves (`hf download REPO --local-dir` writes it):
README.md with `dataset_info` and `configs:` in its YAML header, and one parquet file per split,
`<config>/<split>-00000-of-00001.parquet`. Tests put them under a hub mirror folder or under a fake
Hugging Face cache (`datasets--owner--name/snapshots/<commit>/`), so the hub path runs offline."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import yaml

HUB_TYPES = {"int": "int32", "str": "string", "bool": "bool", "float": "float32"}


def hub_features(schema: Mapping[str, str]):
    """The features the hub's parquet conversion of the code_x_glue_* datasets uses."""
    from datasets import Features, List, Value

    return Features({k: List(Value("string")) if t == "list[str]" else Value(HUB_TYPES[t])
                     for k, t in schema.items()})


def write_repo(repo_dir: Path, configs: Mapping[str, Mapping[str, list[dict]]], schema: Mapping[str, str],
               features=None, card_rows: Mapping[str, Mapping[str, int]] | None = None,
               commit: str | None = None) -> Path:
    """configs: {config: {split: rows}}. card_rows overrides the row counts the card lists (an
    incomplete download). commit: write the .cache metadata `hf download --local-dir` leaves."""
    from datasets import Dataset

    repo_dir.mkdir(parents=True, exist_ok=True)
    info, entries = [], []
    for config, splits in configs.items():
        split_info = []
        for split, rows in splits.items():
            path = repo_dir / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_list(list(rows), features=features or hub_features(schema)).to_parquet(str(path))
            n = (card_rows or {}).get(config, {}).get(split, len(rows))
            split_info.append({"name": split, "num_bytes": path.stat().st_size, "num_examples": n})
        info.append({"config_name": config, "splits": split_info})
        entries.append({"config_name": config, "data_files": [{"split": s, "path": f"{config}/{s}-*"} for s in splits]})
    header = yaml.safe_dump({"license": "c-uda", "dataset_info": info, "configs": entries}, sort_keys=False)
    (repo_dir / "README.md").write_text(f"---\n{header}---\n# test fixture\n")
    if commit:
        meta = repo_dir / ".cache" / "huggingface" / "download"
        meta.mkdir(parents=True, exist_ok=True)
        (meta / "README.md.metadata").write_text(f"{commit}\netag\n0\n")
    return repo_dir


def hub_cache_dir(cache: Path, repo: str, commit: str) -> Path:
    """The snapshot folder of `repo` at `commit` inside a Hugging Face hub cache (refs/main -> commit)."""
    base = cache / f"datasets--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    return base / "snapshots" / commit
