"""Trackers: MLflow (the lab notebook) or none. Chosen by `tracker=` in config, not in code."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness import liveness
from harness.redact import redact

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
    def claim(self, config_hash: str) -> str | None: ...
    def release(self) -> None: ...
    def end(self, status: str) -> None: ...


@dataclass
class Previous:
    """Earlier runs of the same config: one FINISHED (skip it), one still running in a live process
    (skip it: `elsewhere` says where) or one interrupted (resume it)."""
    finished: str | None = None
    interrupted: str | None = None
    elsewhere: str | None = None


class NullTracker:
    """tracker=none: record nothing beyond result.json."""
    run_id = None

    def start(self, run_name, tags, parent_run_id=None, resume_run_id=None): pass
    def log_dataset(self, name, source, digest, context): pass
    def log_table(self, data, artifact_file): pass
    def set_tags(self, tags): pass
    def previous(self, config_hash): return Previous()
    def claim(self, config_hash): return None
    def release(self): pass
    def log_params(self, params): pass
    def log_metrics(self, metrics, step=None): pass
    def log_artifact(self, path, artifact_path=None): pass
    def end(self, status): pass


def mlflow_experiment(uri: str, experiment: str, artifact_root: str) -> str:
    """Experiment id, created with its artifacts under runs/ (not ./mlruns) on first use. A
    tracking server keeps its own artifact store (its --artifacts-destination)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = Path(artifact_root).resolve().as_uri() if "://" not in artifact_root else artifact_root
    where = {} if uri.startswith(("http://", "https://")) else {"artifact_location": f"{location}/{experiment}"}
    try:
        return mlflow.create_experiment(experiment, **where)
    except MlflowException as err:  # another process (or machine) created it a moment ago
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(experiment).experiment_id


def absolute_uri(uri: str) -> str:
    """sqlite:///runs/mlflow.db is relative to the working directory: pin it now, since MLflow
    caches stores by URI string and a later chdir would otherwise reuse the wrong file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


class MlflowTracker:
    def __init__(self, uri: str, experiment: str, artifact_root: str, heartbeat_interval: float = 30.0,
                 heartbeat_timeout: float = 600.0, store_retries: int = 8):
        if not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError(f"tracker.heartbeat_interval={heartbeat_interval} must be above 0 and below "
                             f"tracker.heartbeat_timeout={heartbeat_timeout} (a few intervals at least)")
        self.uri, self.experiment, self.artifact_root = absolute_uri(uri), experiment, artifact_root
        self.heartbeat_interval, self.heartbeat_timeout = float(heartbeat_interval), float(heartbeat_timeout)
        self.store_retries = max(1, int(store_retries))
        self.run_id: str | None = None
        self._client = None
        self._experiment_id: str | None = None
        self._lock: liveness.CellLock | None = None
        self._heartbeat: liveness.Heartbeat | None = None
        self._kept_params: dict[str, str] = {}  # the params a resumed run holds already (MLflow keeps the first)
        self._logged: set[tuple[str, int]] = set()  # (metric, step) a resumed run already holds

    def __getstate__(self) -> dict:
        """A copy in another process (the joblib launcher pickles the sweep callback) connects anew;
        the heartbeat thread and the lock stay with the process that holds them."""
        return {**self.__dict__, "_client": None, "_heartbeat": None, "_lock": None}

    def _connect(self):
        from mlflow import MlflowClient

        if self._client is None:
            with _first_use(self.uri):  # two processes creating one sqlite store's tables would collide
                client = liveness.RetryingClient(MlflowClient(self.uri), self.store_retries)
                self._experiment_id = liveness.with_retries(mlflow_experiment, self.store_retries)(
                    self.uri, self.experiment, self.artifact_root)
            self._client = client
        return self._client

    def previous(self, config_hash: str) -> Previous:
        """A FINISHED run of this config; else one RUNNING in a live process (harness.liveness.alive:
        same-host pid, or a heartbeat younger than heartbeat_timeout), which is left alone; else an
        interrupted one (RUNNING, its process gone) that the next attempt resumes from its checkpoint."""
        client = self._connect()
        runs = client.search_runs([self._experiment_id], f"tags.config_hash = '{config_hash}'",
                                  order_by=["attributes.start_time DESC"], max_results=20)
        found, now = Previous(), time.time()
        for run in runs:
            if run.info.status == "FINISHED" and run.data.tags.get("harness.status") == "FINISHED":
                return Previous(finished=run.info.run_id)
            if run.info.status != "RUNNING" or run.info.run_id == self.run_id:
                continue
            if liveness.alive(run.data.tags, self.heartbeat_timeout, now):
                found.elsewhere = found.elsewhere or (
                    f"running elsewhere ({liveness.describe(run.data.tags, now)}; MLflow run {run.info.run_id}); "
                    f"it is taken over once its heartbeat is older than tracker.heartbeat_timeout="
                    f"{self.heartbeat_timeout:g} s")
            elif found.interrupted is None:
                found.interrupted = run.info.run_id
        return found

    def claim(self, config_hash: str) -> str | None:
        """Take the cell's lock in the tracking store (harness.liveness.CellLock): None when this
        process now holds it, else why not (who holds it). Kept, with a heartbeat, until end()."""
        self.release()
        lock = liveness.CellLock(self._connect(), config_hash, self.heartbeat_timeout)
        busy = lock.acquire()
        if busy is None:
            self._lock = lock
            self._keep_alive()
        return busy

    def _keep_alive(self) -> None:
        """Refresh the run's and the lock's heartbeat every heartbeat_interval s, until end()."""
        if self._heartbeat is None:
            self._heartbeat = liveness.Heartbeat(self._beat, self.heartbeat_interval).start()

    def release(self) -> None:
        """Stop the heartbeat and give the cell's lock back (idempotent)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    def _beat(self) -> None:
        now = f"{time.time():.0f}"
        if self.run_id:
            self._client.set_tag(self.run_id, liveness.HEARTBEAT_TAG, now)
        if self._lock is not None:
            self._lock.refresh()

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None,
              resume_run_id: str | None = None) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        run_name, tags = redact(run_name), redact(tags)  # no secret in a run name or tag
        client = self._connect()
        owner = {**liveness.owner(), liveness.HEARTBEAT_TAG: f"{time.time():.0f}"}  # this process owns it now
        if resume_run_id:
            client.update_run(resume_run_id, status="RUNNING")
            self.run_id = resume_run_id
            self._kept_params = dict(client.get_run(resume_run_id).data.params)
            self._logged = {(key, m.step) for key in client.get_run(resume_run_id).data.metrics
                            for m in client.get_metric_history(resume_run_id, key)}
            self.set_tags({**tags, **owner, "harness.resumed": "true"})
        else:
            tags = {**tags, **owner, MLFLOW_RUN_NAME: run_name}
            if parent_run_id:
                tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
            self.run_id = client.create_run(self._experiment_id, run_name=run_name, tags=tags).info.run_id
        self._keep_alive()

    def log_params(self, params: dict[str, Any]) -> None:
        """Every param is logged; a value over MLflow's limit is cut and named in a tag (the full
        resolved config is an artifact), so nothing is dropped silently."""
        from mlflow.entities import Param

        params = redact(params)  # a secret a config value holds is never a param
        batch = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
        cut = sorted(k for k, v in params.items() if len(str(v)) > MAX_PARAM_CHARS)
        if cut:
            self._client.set_tag(self.run_id, "truncated_params", ",".join(cut)[:MAX_PARAM_CHARS])
        kept = self._kept_params  # a resumed run: a param cannot change (only unhashed keys can differ)
        changed = [f"{p.key}: {kept[p.key]} -> {p.value}" for p in batch if kept.get(p.key, p.value) != p.value]
        if changed:
            self._client.set_tag(self.run_id, "harness.resumed_params_changed", "; ".join(changed)[:MAX_PARAM_CHARS])
        batch = [p for p in batch if p.key not in kept]
        for i in range(0, len(batch), 100):  # the store accepts at most 100 params per call
            self._client.log_batch(self.run_id, params=batch[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                 if v is not None and (k, step or 0) not in self._logged]  # a resume logs each step once
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        log = self._client.log_artifacts if Path(path).is_dir() else self._client.log_artifact
        log(self.run_id, str(path), artifact_path)

    def log_table(self, data: dict[str, list], artifact_file: str) -> None:
        """A table artifact (the UI's artifact view shows it as a table)."""
        self._client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        tags = redact({k: str(v) for k, v in tags.items()})  # no secret in a tag
        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        """The data a run used, through MLflow's dataset tracking (shown in the UI's inputs)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        if len(digest) > 36:  # MLflow's limit; a multi-task member's split (`<task>/validation`) is longer
            import hashlib

            digest = hashlib.sha256(digest.encode()).hexdigest()[:36]
        dataset = MetaDataset(resolve_dataset_source(source), name=name, digest=digest)
        tag = InputTag("mlflow.data.context", context)
        self._client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(), [tag])])

    def end(self, status: str) -> None:
        """MLflow knows FINISHED/FAILED/KILLED; a SKIPPED cell ends KILLED, tagged harness.status. The
        heartbeat stops first and the cell's lock is given back last, once the run says how it ended."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        try:
            if self.run_id:
                self._client.set_tag(self.run_id, "harness.status", status)
                self._client.set_terminated(self.run_id, status="KILLED" if status == "SKIPPED" else status)
        finally:
            self.release()


@contextmanager
def _first_use(uri: str):
    """On a sqlite store, one process at a time creates its tables and the experiment (a file lock
    beside the database: sqlite is one machine's file). A server serialises that itself."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.lock", timeout=300):
        yield

