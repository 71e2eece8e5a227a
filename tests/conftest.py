"""Tests run offline, on the CPU, with tiny models built from configs and the shipped real data."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ[var] = "1"


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """Built tokenizers and random-init models are shared by every test of the session, and so is
    one MLflow store: MLflow 3 keeps one sqlite store per process, whatever the URI says."""
    root = tmp_path_factory.mktemp("session")
    os.environ["HARNESS_CACHE_DIR"] = str(root / "cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
    yield


def subprocess_env() -> dict[str, str]:
    """A child process gets its own MLflow store in its working directory (runs/mlflow.db)."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory: runs/, the MLflow store and artefacts land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def compose(overrides: list[str] | None = None):
    """The config a user gets from `python -m harness <overrides>`."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from harness.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test's own servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]
