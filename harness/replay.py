"""One journal (harness.journal) replayed into one MLflow run, for harness.sync: a new run, or the
partial one a cell left when its server died. Params and tags are idempotent; metric points the run
holds are not logged twice; a table it holds is not appended to; result.json goes last, saying that
the store holds the cell, and the run ends with the recorded status and end time.
"""
from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from harness import outbox
from harness.journal import Entries
from harness.outbox import SYNC_TAG

PARENT, RUN_NAME, STATUS = "mlflow.parentRunId", "mlflow.runName", "harness.status"
METRIC_BATCH = 1000  # the most metrics MLflow takes in one log_batch


def complete(run) -> bool:
    return run.info.status != "RUNNING" and STATUS in run.data.tags


class Store:
    """The target tracking store: one client, and a harness MlflowTracker per experiment for replay."""

    def __init__(self, uri: str):
        from mlflow import MlflowClient

        from harness.tracking import absolute_uri

        self.uri = absolute_uri(uri)
        self.client = MlflowClient(self.uri)
        self._helpers: dict[str, object] = {}

    def helper(self, entries: Entries, run_id: str | None = None):
        """harness.tracking.MlflowTracker on this store (its param, tag, dataset and artifact logging)."""
        from harness.tracking import MlflowTracker

        spec = entries.header.get("tracker") or {}
        name = spec.get("experiment") or "codexglue"
        if name not in self._helpers:
            self._helpers[name] = MlflowTracker(self.uri, name, spec.get("artifact_root") or "runs/mlartifacts")
            self._helpers[name]._connect()
        helper = self._helpers[name]
        helper.run_id = run_id
        return helper

    def find(self, entries: Entries):
        """The run that carries this journal's sync id: a complete one first, else a partial one."""
        experiment = self.helper(entries)._experiment_id
        runs = self.client.search_runs([experiment], f"tags.`{SYNC_TAG}` = '{entries.header['sync_id']}'",
                                       max_results=10)
        return next((r for r in runs if complete(r)), runs[0] if runs else None)

    def finished_twin(self, entries: Entries) -> str | None:
        """A FINISHED run of the same config as this cell, which the cell would have been skipped for had
        the store answered (harness.run); None for a sweep, or a cell run with rerun=true."""
        config = entries.first("start")["tags"].get("config_hash")
        rerun = any(c["params"].get("rerun") == "True" for c in entries.calls if c["call"] == "log_params")
        if entries.scope != "cell" or not config or rerun:
            return None
        runs = self.client.search_runs([self.helper(entries)._experiment_id],
                                       f"tags.config_hash = '{config}' and attributes.status = 'FINISHED'",
                                       max_results=20)
        return next((r.info.run_id for r in runs if r.data.tags.get(STATUS) == "FINISHED"), None)

    def exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception as err:  # noqa: BLE001 -- absent there (another store), unless it is down
            if outbox.is_outage(err):
                raise
            return False


class Replay:
    """One journal replayed into one run: a new one, or the partial one that the cell left."""

    def __init__(self, store: Store, entries: Entries, run, parent: str | None):
        self.store, self.e, self.client = store, entries, store.client
        self.existing = run is not None
        self.run_id = run.info.run_id if run else self._create(parent)
        if run is not None and parent and run.data.tags.get(PARENT) != parent:
            self.client.set_tag(self.run_id, PARENT, parent)
        self.helper = store.helper(entries, self.run_id)
        self.metrics, self.missing, self.counts, self.ended = [], [], Counter(), None

    def _create(self, parent: str | None) -> str:
        start = self.e.first("start")
        tags = {**start["tags"], RUN_NAME: start["run_name"], "harness.synced": "true"}
        if parent:
            tags[PARENT] = parent
        return self.client.create_run(self.store.helper(self.e)._experiment_id, start_time=start["ts"],
                                      tags=tags, run_name=start["run_name"]).info.run_id

    def run(self) -> dict | None:
        """Replay every call, then upload result.json and end the run; the result.json it uploaded."""
        for call in self.e.calls:
            getattr(self, f"_{call['call']}")(call)
        self._flush_metrics()
        if self.missing:
            self.client.set_tag(self.run_id, "harness.sync.missing", ", ".join(self.missing)[:5000])
            print(f"[sync] warning: {self.e.out_dir}: not on disk any more, not uploaded: {', '.join(self.missing)}")
        record = self._upload_result() if self.e.scope == "cell" else None
        if self.ended is not None:
            status = self.ended["status"]
            self.client.set_tag(self.run_id, STATUS, status)
            self.client.set_terminated(self.run_id, status="KILLED" if status == "SKIPPED" else status,
                                       end_time=self.ended["ts"])
        return record

    def describe(self) -> str:
        c = self.counts
        return (f"{self.e.out_dir} as MLflow run {self.run_id} ({c['params']} params, {c['metrics']} metric points, "
                f"{c['artifacts']} artifacts, {c['tables']} tables)")

    def _start(self, call: dict) -> None:
        if self.existing:  # the live start may not have got through whole
            self.helper.set_tags({**call["tags"], RUN_NAME: call["run_name"]})

    def _log_params(self, call: dict) -> None:
        self.helper.log_params(call["params"])
        self.counts["params"] += len(call["params"])

    def _set_tags(self, call: dict) -> None:
        self.helper.set_tags(call["tags"])

    def _log_dataset(self, call: dict) -> None:
        self.helper.log_dataset(call["name"], call["source"], call["digest"], call["context"])

    def _log_metrics(self, call: dict) -> None:
        from mlflow.entities import Metric

        self.metrics += [Metric(k, v, call["ts"], call["step"] or 0) for k, v in call["metrics"].items()]

    def _log_artifact(self, call: dict) -> None:
        path = self._path(call["path"])
        if self.e.scope == "cell" and path == self.e.out_dir / "result.json" and not call["artifact_path"]:
            return  # uploaded last, saying that the store holds the cell
        if not path.exists():
            self.missing.append(call["path"])
            return
        self.helper.log_artifact(path, call["artifact_path"])
        self.counts["artifacts"] += 1

    def _log_table(self, call: dict) -> None:
        if self.existing and _has_artifact(self.client, self.run_id, call["artifact_file"]):
            return  # log_table appends to a table that is there
        data = json.loads(self._path(call["file"]).read_text(encoding="utf-8"))
        self.client.log_table(self.run_id, data=data, artifact_file=call["artifact_file"])
        self.counts["tables"] += 1

    def _end(self, call: dict) -> None:
        self.ended = call

    def _path(self, recorded: str) -> Path:
        path = Path(recorded)
        return path if path.is_absolute() else self.e.out_dir / path

    def _flush_metrics(self) -> None:
        points = self.metrics
        if self.existing:  # the points the partial run holds are not logged twice
            held = Counter()
            for key in {m.key for m in points}:
                held.update((key, m.step, _value(m.value)) for m in self.client.get_metric_history(self.run_id, key))
            kept = []
            for m in points:
                if held[(m.key, m.step, _value(m.value))] > 0:
                    held[(m.key, m.step, _value(m.value))] -= 1
                else:
                    kept.append(m)
            points = kept
        for i in range(0, len(points), METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=points[i:i + METRIC_BATCH])
        self.counts["metrics"] = len(points)

    def _upload_result(self) -> dict | None:
        path = self.e.out_dir / "result.json"
        if not path.exists():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        synced = {"uri": self.store.uri, "run_id": self.run_id, "at": datetime.now(timezone.utc).isoformat()}
        record["tracking"] = synced_state(record.get("tracking"), synced)
        record["mlflow_run_id"] = self.run_id
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "result.json").write_text(json.dumps(record, indent=2) + "\n")
            self.client.log_artifact(self.run_id, str(Path(tmp) / "result.json"))
        return record


def synced_state(tracking: dict | None, synced: dict) -> dict:
    """result.json `tracking` once a store holds the cell: held, and why it was not held live."""
    tracking = dict(tracking or {})
    if tracking.get("reason"):
        tracking["unheld_live"] = tracking["reason"]
    return {**tracking, "held": True, "reason": None, "synced": synced}


def _value(v: float):
    return "nan" if math.isnan(v) else float(v)


def _has_artifact(client, run_id: str, path: str) -> bool:
    parent = str(Path(path).parent)
    return any(a.path == path for a in client.list_artifacts(run_id, None if parent == "." else parent))
