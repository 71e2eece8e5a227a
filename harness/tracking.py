"""Trackers: MLflow (the lab notebook) or none. Chosen by `tracker=` in config, not in code."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value; longer values are truncated (full config is an artifact)


class Tracker(Protocol):
    run_id: str | None

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def end(self, status: str) -> None: ...


class NullTracker:
    """tracker=none: record nothing beyond result.json."""
    run_id = None

    def start(self, run_name, tags, parent_run_id=None): pass
    def log_params(self, params): pass
    def log_metrics(self, metrics, step=None): pass
    def log_artifact(self, path, artifact_path=None): pass
    def end(self, status): pass


def mlflow_experiment(uri: str, experiment: str, artifact_root: str) -> str:
    """Experiment id, created with its artifacts under runs/ (not ./mlruns) on first use."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = Path(artifact_root).resolve().as_uri() if "://" not in artifact_root else artifact_root
    return mlflow.create_experiment(experiment, artifact_location=f"{location}/{experiment}")


def absolute_uri(uri: str) -> str:
    """sqlite:///runs/mlflow.db is relative to the working directory: pin it now, since MLflow
    caches stores by URI string and a later chdir would otherwise reuse the wrong file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


class MlflowTracker:
    def __init__(self, uri: str, experiment: str, artifact_root: str):
        self.uri, self.experiment, self.artifact_root = absolute_uri(uri), experiment, artifact_root
        self.run_id: str | None = None
        self._client = None

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None) -> None:
        from mlflow import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        experiment_id = mlflow_experiment(self.uri, self.experiment, self.artifact_root)
        self._client = MlflowClient(self.uri)
        tags = {**tags, MLFLOW_RUN_NAME: run_name}
        if parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        self.run_id = self._client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # the store accepts at most 100 params per call
            self._client.log_batch(self.run_id, params=batch[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        log = self._client.log_artifacts if Path(path).is_dir() else self._client.log_artifact
        log(self.run_id, str(path), artifact_path)

    def end(self, status: str) -> None:
        if self.run_id:
            self._client.set_terminated(self.run_id, status="KILLED" if status == "SKIPPED" else status)
