"""Trackers: MLflow (the lab notebook) or none. Chosen by `tracker=` in config, not in code."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value; longer values are truncated (full config is an artifact)


class Tracker(Protocol):
    run_id: str | None

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None: ...
    def log_table(self, data: dict[str, list], artifact_file: str) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def previous(self, config_hash: str) -> Previous: ...
    def end(self, status: str) -> None: ...


@dataclass
class Previous:
    """Earlier runs of the same config: one FINISHED (skip it) or one interrupted (resume it)."""
    finished: str | None = None
    interrupted: str | None = None


class NullTracker:
    """tracker=none: record nothing beyond result.json."""
    run_id = None

    def start(self, run_name, tags, parent_run_id=None, resume_run_id=None): pass
    def log_dataset(self, name, source, digest, context): pass
    def log_table(self, data, artifact_file): pass
    def set_tags(self, tags): pass
    def previous(self, config_hash): return Previous()
    def log_params(self, params): pass
    def log_metrics(self, metrics, step=None): pass
    def log_artifact(self, path, artifact_path=None): pass
    def end(self, status): pass


def mlflow_experiment(uri: str, experiment: str, artifact_root: str) -> str:
    """Experiment id, created with its artifacts under runs/ (not ./mlruns) on first use. A
    tracking server keeps its own artifact store (its --artifacts-destination)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    if uri.startswith(("http://", "https://")):
        return mlflow.create_experiment(experiment)
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
        self._experiment_id: str | None = None

    def _connect(self):
        from mlflow import MlflowClient

        if self._client is None:
            if self.uri.startswith("sqlite:///"):
                Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(self.uri)
            self._experiment_id = mlflow_experiment(self.uri, self.experiment, self.artifact_root)
        return self._client

    def previous(self, config_hash: str) -> Previous:
        """A FINISHED run of this config, else an interrupted one (still RUNNING, but its process is
        gone: killed) that the next attempt resumes from its checkpoint."""
        client = self._connect()
        runs = client.search_runs([self._experiment_id], f"tags.config_hash = '{config_hash}'",
                                  order_by=["attributes.start_time DESC"], max_results=20)
        found = Previous()
        for run in runs:
            if run.info.status == "FINISHED" and run.data.tags.get("harness.status") == "FINISHED":
                return Previous(finished=run.info.run_id)
            if found.interrupted is None and run.info.status == "RUNNING" and not _alive(run.data.tags):
                found.interrupted = run.info.run_id
        return found

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None,
              resume_run_id: str | None = None) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        client = self._connect()
        owner = {"harness.host": platform.node(), "harness.pid": str(os.getpid())}
        if resume_run_id:
            client.update_run(resume_run_id, status="RUNNING")
            self.run_id = resume_run_id
            self.set_tags({**tags, **owner, "harness.resumed": "true"})
            return
        tags = {**tags, **owner, MLFLOW_RUN_NAME: run_name}
        if parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        self.run_id = client.create_run(self._experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Every param is logged; a value over MLflow's limit is cut and named in a tag (the full
        resolved config is an artifact), so nothing is dropped silently."""
        from mlflow.entities import Param

        batch = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
        cut = sorted(k for k, v in params.items() if len(str(v)) > MAX_PARAM_CHARS)
        if cut:
            self._client.set_tag(self.run_id, "truncated_params", ",".join(cut)[:MAX_PARAM_CHARS])
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

    def log_table(self, data: dict[str, list], artifact_file: str) -> None:
        """A table artifact (the UI's artifact view shows it as a table)."""
        self._client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        """The data a run used, through MLflow's dataset tracking (shown in the UI's inputs)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        dataset = MetaDataset(resolve_dataset_source(source), name=name, digest=digest)
        tag = InputTag("mlflow.data.context", context)
        self._client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(), [tag])])

    def end(self, status: str) -> None:
        """MLflow knows FINISHED/FAILED/KILLED; a SKIPPED cell ends KILLED, tagged harness.status."""
        if self.run_id:
            self._client.set_tag(self.run_id, "harness.status", status)
            self._client.set_terminated(self.run_id, status="KILLED" if status == "SKIPPED" else status)


def _alive(tags: dict[str, str]) -> bool:
    """Is the process that owns this RUNNING run still alive (same host, pid exists)?"""
    if tags.get("harness.host") != platform.node() or not tags.get("harness.pid", "").isdigit():
        return False
    try:
        os.kill(int(tags["harness.pid"]), 0)
    except OSError:
        return False
    return int(tags["harness.pid"]) != os.getpid()
