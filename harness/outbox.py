"""Tracking that survives a tracking server that cannot be reached (at a cell's start, in its
middle or at its end).

Every call a cell (or a sweep) makes to its tracker is first appended to
`<out_dir>/tracking/journal.jsonl`, then forwarded to the tracker under bounds: MLflow's own HTTP
retries are capped (MLFLOW_HTTP_REQUEST_MAX_RETRIES, _BACKOFF_FACTOR and _TIMEOUT, unless the user
set them) and each call gets a wall-clock deadline (HARNESS_TRACKING_DEADLINE_S). The first call
that fails or runs past its deadline stops the forwarding for the rest of the cell: training goes
on, result.json records `tracking.held: false` with the reason, and `python -m harness.sync`
uploads the cell from its journal later. A full disk is no outage: it is raised, and harness.faults
fails the cell.
"""
from __future__ import annotations

import errno
import json
import os
import platform
import threading
import uuid
from pathlib import Path
from typing import Any

from harness.journal import JOURNAL, TABLES, Journal
from harness.redact import redact
from harness.tracking import NullTracker, Previous

SYNC_TAG = "harness.sync_id"  # the run that holds a journal carries its id, so sync never duplicates it
MLFLOW_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",     # MLflow's defaults (7, factor 2, 120 s)
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # retry for minutes on every call
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
DEADLINE_ENV, DEFAULT_DEADLINE_S = "HARNESS_TRACKING_DEADLINE_S", 120.0
_FAILED = object()


def journaled(tracker, out_dir: Path, scope: str = "cell"):
    """`tracker` behind a journal in out_dir; tracker=none records nothing, so it is returned as is."""
    return tracker if isinstance(tracker, NullTracker) else Outbox(tracker, Path(out_dir), scope)


class Outbox:
    """A Tracker that journals every call and forwards it while the tracker answers (module doc)."""

    def __init__(self, inner, out_dir: Path, scope: str = "cell"):
        for key, value in MLFLOW_BOUNDS.items():
            os.environ.setdefault(key, value)
        self.inner, self.out_dir, self.scope = inner, out_dir, scope
        self.sync_id = uuid.uuid4().hex
        self.held, self.reason, self.started, self.ended = True, None, False, False
        self.deadline = float(os.environ.get(DEADLINE_ENV, DEFAULT_DEADLINE_S))
        self._run_id: str | None = None
        self.journal = Journal(out_dir, {"scope": scope, "sync_id": self.sync_id, "tracker": describe(inner),
                                         "host": platform.node(), "pid": os.getpid()})

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def previous(self, config_hash: str) -> Previous:
        found = self._forward("previous", config_hash)
        return Previous() if found is _FAILED else found

    def claim(self, config_hash: str) -> str | None:
        """The cell's lock; a store that cannot be reached holds none, so the cell runs (None)."""
        found = self._forward("claim", config_hash)
        return None if found is _FAILED else found

    def release(self) -> None:
        self._release()

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None,
              resume_run_id: str | None = None) -> None:
        tags = {**tags, SYNC_TAG: self.sync_id}
        self._record("start", run_name=redact(run_name), tags=_strs(tags), parent_run_id=parent_run_id,
                     resume_run_id=resume_run_id)
        self.started = True
        resume = {"resume_run_id": resume_run_id} if resume_run_id else {}
        if self._forward("start", run_name, tags, parent_run_id, **resume) is not _FAILED:
            self._run_id = self.inner.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self._record("log_params", params=_strs(params))
        self._forward("log_params", params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._record("log_metrics", metrics={k: float(v) for k, v in metrics.items() if v is not None}, step=step)
        self._forward("log_metrics", metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._record("log_artifact", path=self._relative(path), artifact_path=artifact_path)
        self._forward("log_artifact", path, artifact_path)

    def log_table(self, data: dict[str, list], artifact_file: str) -> None:
        kept = self.out_dir / TABLES / artifact_file
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps(data, default=str))
        self._record("log_table", artifact_file=artifact_file, file=self._relative(kept))
        self._forward("log_table", data, artifact_file)

    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        self._record("log_dataset", name=name, source=source, digest=digest, context=context)
        self._forward("log_dataset", name, source, digest, context)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._record("set_tags", tags=_strs(tags))
        self._forward("set_tags", tags)

    def end(self, status: str) -> None:
        self._record("end", status=status)
        self.ended = True
        if self._forward("end", status) is _FAILED:
            self._release()  # the tracker's heartbeat stops, and its lock goes back if the store answers

    def __getattr__(self, name: str):
        """A tracker method this wrapper does not know is forwarded under the same bounds (not journaled)."""
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.inner, name)
        if not callable(value):
            return value
        return lambda *args, **kwargs: (None if (found := self._forward(name, *args, **kwargs)) is _FAILED
                                        else found)

    def state(self) -> dict:
        """result.json `tracking`: does the tracker hold this cell, and if not, why and where the journal is."""
        return {"held": self.held, "reason": self.reason, "uri": describe(self.inner).get("uri"),
                "sync_id": self.sync_id, "journal": str(JOURNAL)}

    def _record(self, call: str, **fields) -> None:
        self.journal.write({"call": call, **fields})

    def _forward(self, name: str, *args, **kwargs):
        if not self.held:
            return _FAILED
        try:
            return bounded(getattr(self.inner, name), args, kwargs, self.deadline)
        except Exception as err:  # noqa: BLE001 -- an outage never stops the cell; a full disk does
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._lose(name, err)
            return _FAILED

    def _release(self) -> None:
        release = getattr(self.inner, "release", None)
        if release is None:
            return
        try:
            bounded(release, (), {}, self.deadline)
        except Exception as err:  # noqa: BLE001 -- the lock then lapses with its heartbeat
            print(f"[harness] warning: the tracker's release failed: {type(err).__name__}: {err}", flush=True)

    def _lose(self, call: str, err: Exception) -> None:
        kind = "unreachable" if is_outage(err) else "error"
        first = (str(err).strip().splitlines() or [""])[0][:400]
        self.held, self.reason = False, redact(f"{call} failed ({kind}): {type(err).__name__}: {first}")
        self.journal.write({"event": "unheld", "call": call, "reason": self.reason})
        print(f"[harness] warning: the tracker ({describe(self.inner).get('uri')}) no longer holds this "
              f"{self.scope}: {self.reason}. The {self.scope} goes on; every record is kept in {self.journal.path}; "
              f"upload it later with `python -m harness.sync --runs-dir {_runs_root(self.out_dir)}`", flush=True)

    def _relative(self, path: Path) -> str:
        path = Path(path).resolve()
        root = self.out_dir.resolve()
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def state(tracker) -> dict | None:
    return tracker.state() if isinstance(tracker, Outbox) else None


def settle(tracker, result, out_dir: Path) -> None:
    """After the cell's close: the journal holds the cell's end even where no run was started (the
    tracker was down from the start), and result.json is rewritten if the tracking state changed."""
    if not isinstance(tracker, Outbox):
        return
    if tracker.started and not tracker.ended:
        for name in ("traceback.txt", "result.json"):
            if (out_dir / name).exists():
                tracker.log_artifact(out_dir / name)
        if result.reason:
            tracker.set_tags({"harness.reason": result.reason[:5000]})
        tracker.end(result.status)
    if result.tracking != tracker.state():
        result.tracking = tracker.state()
        if not (out_dir / "result.json").exists():
            return  # none was written (a full disk): harness.faults leaves it absent, not half-true
        try:
            result.write(out_dir)
        except Exception as err:  # noqa: BLE001 -- the journal still says it
            print(f"[harness] warning: result.json could not record the tracking state: {err}", flush=True)


def bounded(fn, args: tuple, kwargs: dict, seconds: float):
    """fn(*args, **kwargs), abandoned (in a daemon thread) if it has not returned within `seconds`."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 -- handed to the caller
            box["error"] = err

    worker = threading.Thread(target=call, name="harness-tracker-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s ({DEADLINE_ENV})")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def is_outage(err: BaseException) -> bool:
    """A connection refused, reset or timed out, or a store locked, anywhere in the exception chain."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if isinstance(err, (OSError, TimeoutError)) or "Max retries exceeded" in text or "database is locked" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def describe(tracker) -> dict:
    root = getattr(tracker, "artifact_root", None)
    if root and "://" not in str(root):
        root = str(Path(root).resolve())
    return {"class": f"{type(tracker).__module__}.{type(tracker).__qualname__}", "uri": redact(getattr(tracker, "uri", None)),
            "experiment": getattr(tracker, "experiment", None), "artifact_root": root}


def _strs(values: dict) -> dict[str, str]:
    return redact({str(k): str(v) for k, v in values.items()})


def _runs_root(out_dir: Path) -> Path:
    for parent in [out_dir, *out_dir.parents]:
        if parent.name == "runs":
            return parent
    return out_dir.parent
