"""`python -m harness.sync --runs-dir DIR [--tracking-uri URI]`: upload the cells and sweeps that the
tracker did not hold (harness.outbox journals, result.json `tracking.held: false`) as complete runs.

For each such journal under DIR, into URI (default: the store the cell was meant for):
- a run tagged with its sync id that is already complete (ended, with harness.status) is left as it
  is: sync never duplicates a run, and a second sync does nothing;
- a run tagged with it that is partial (the server died mid-cell, or an earlier sync was cut short)
  is completed: params and tags are idempotent, metric points it holds are not logged again, and a
  table it holds is not appended to;
- else a run is created with the cell's start time, under its sweep's parent run (found by the
  sweep's sync id, or created from the sweep's own journal).
Every call is replayed in order (params, tags, datasets, metrics with their steps and timestamps,
artifacts from the cell's directory, tables), result.json is uploaded saying `held: true`, and the
run ends with the recorded status and end time; only then are result.json and the journal marked.
A cell that has not ended (still running, or killed: run it again and it resumes) is left alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness import journal, outbox
from harness.journal import JOURNAL, Entries
from harness.outbox import MLFLOW_BOUNDS
from harness.redact import MASK
from harness.replay import PARENT, Replay, Store, complete, synced_state


class Unreachable(RuntimeError):
    """The target store does not answer: nothing more is tried."""


@dataclass
class Report:
    lines: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in (
        "uploaded", "completed", "present", "duplicate", "linked", "open", "failed")})

    def add(self, kind: str, text: str) -> None:
        self.lines[kind].append(text)
        print(f"[sync] {kind}: {text}", flush=True, file=sys.stderr if kind == "failed" else sys.stdout)

    def summary(self) -> str:
        return "[sync] " + ", ".join(f"{len(v)} {k}" for k, v in self.lines.items())


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(f"{path.name}.sync{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class Sync:
    """Every journal under runs_dir, sweeps before their cells."""

    def __init__(self, runs_dir: Path, tracking_uri: str | None = None):
        self.runs_dir, self.override = Path(runs_dir), tracking_uri
        self.report, self._stores, self._sweep_runs = Report(), {}, {}
        self.sweeps: dict[Path, Entries] = {}

    def run(self) -> Report:
        journals = [journal.read(p) for p in sorted(self.runs_dir.rglob(str(JOURNAL)))]
        self.sweeps = {e.out_dir.resolve(): e for e in journals if e.scope == "sweep"}
        for entries in sorted(journals, key=lambda e: e.scope != "sweep"):
            try:
                self.one(entries)
            except Exception as err:  # noqa: BLE001 -- one bad cell does not stop the others; an outage does
                if outbox.is_outage(err):
                    raise Unreachable(f"the tracking store does not answer ({type(err).__name__}: "
                                      f"{str(err)[:300]}); run the sync again once it is up") from err
                self.report.add("failed", f"{entries.out_dir}: {type(err).__name__}: {err}")
        return self.report

    def store(self, entries: Entries) -> Store:
        uri = self.override or (entries.header.get("tracker") or {}).get("uri")
        if not uri:
            raise ValueError("the journal names no tracking URI; pass --tracking-uri")
        if MASK in uri:
            raise ValueError(f"the journal's tracking URI {uri} had its password masked when it was "
                             "recorded; pass --tracking-uri with the password (or a URI without one)")
        if uri not in self._stores:
            self._stores[uri] = Store(uri)
        return self._stores[uri]

    def pending(self, entries: Entries, store: Store) -> bool:
        return entries.unheld is not None and not any(s.get("uri") == store.uri for s in entries.synced)

    def one(self, entries: Entries) -> None:
        if entries.first("start") is None:
            return  # no run was ever started (a cell skipped as already FINISHED)
        store = self.store(entries)
        if entries.scope == "sweep":
            if self.pending(entries, store) and entries.first("end") is None:
                self.report.add("open", f"sweep {entries.out_dir} has not ended (its cells go under its run)")
            elif self.pending(entries, store):
                self.sweep_run(entries, store)
            return
        if not self.pending(entries, store):
            return self._link(entries, store)
        if entries.first("end") is None:
            return self.report.add("open", f"{entries.out_dir} has not ended (still running, or killed: "
                                           "run it again to resume it)")
        run = store.find(entries)
        if run is None and (twin := store.finished_twin(entries)):
            self._done(entries, store, twin, None, duplicate=True)
            return self.report.add("duplicate", f"{entries.out_dir} ran while the store could not say that its "
                                                f"config was FINISHED already, as MLflow run {twin}: not uploaded "
                                                "again (a cell run with rerun=true is)")
        parent = self.parent(entries, store)
        if run is not None and complete(run):
            if parent and run.data.tags.get(PARENT) != parent:
                store.client.set_tag(run.info.run_id, PARENT, parent)
            self._done(entries, store, run.info.run_id, None)
            return self.report.add("present", f"{entries.out_dir} is MLflow run {run.info.run_id}")
        replay = Replay(store, entries, run, parent)
        self._done(entries, store, replay.run_id, replay.run())
        self.report.add("completed" if replay.existing else "uploaded", replay.describe())

    def _done(self, entries: Entries, store: Store, run_id: str, record: dict | None,
              duplicate: bool = False) -> None:
        result = entries.out_dir / "result.json"
        if record is None and result.exists():
            record = json.loads(result.read_text(encoding="utf-8"))
            synced = {"uri": store.uri, "run_id": run_id, "at": datetime.now(timezone.utc).isoformat(),
                      **({"duplicate_of": run_id} if duplicate else {})}
            record.update(mlflow_run_id=run_id, tracking=synced_state(record.get("tracking"), synced))
        if record is not None:
            _write_json(result, record)
        if entries.first("end") is not None:
            journal.mark_synced(entries.path, store.uri, run_id)

    def sweep_run(self, sweep: Entries, store: Store) -> str:
        """The sweep's parent run in the store: found by its sync id, completed, or created."""
        if sweep.path in self._sweep_runs:
            return self._sweep_runs[sweep.path]
        run, ended = store.find(sweep), sweep.first("end") is not None
        if run is not None and (complete(run) or sweep.unheld is None or not ended):
            run_id = run.info.run_id  # whole; held by its live sweep; or to be completed once the sweep ends
        else:
            replay = Replay(store, sweep, run, None)
            replay.run()
            run_id = replay.run_id
            self.report.add("completed" if replay.existing else "uploaded", "sweep " + replay.describe())
        if ended and self.pending(sweep, store):
            journal.mark_synced(sweep.path, store.uri, run_id)
        self._sweep_runs[sweep.path] = run_id
        return run_id

    def sweep_of(self, entries: Entries) -> Entries | None:
        return next((self.sweeps[p] for p in entries.out_dir.resolve().parents if p in self.sweeps), None)

    def parent(self, entries: Entries, store: Store) -> str | None:
        sweep = self.sweep_of(entries)
        if sweep is not None and sweep.first("start") is not None:
            return self.sweep_run(sweep, store)
        recorded = entries.first("start").get("parent_run_id")
        return recorded if recorded and store.exists(recorded) else None

    def _link(self, entries: Entries, store: Store) -> None:
        """A cell held live while its sweep's parent run was not: it is put under that run."""
        sweep = self.sweep_of(entries)
        if entries.first("start").get("parent_run_id") or sweep is None or sweep.unheld is None:
            return
        run = store.find(entries)
        if run is not None and PARENT not in run.data.tags:
            store.client.set_tag(run.info.run_id, PARENT, self.sweep_run(sweep, store))
            self.report.add("linked", f"{entries.out_dir} (MLflow run {run.info.run_id}) under its sweep")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", required=True, type=Path, help="where the cells' output directories are")
    parser.add_argument("--tracking-uri", help="the store to upload into (default: the one each cell was meant for)")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"[sync] --runs-dir {args.runs_dir} is not a directory", file=sys.stderr)
        return 2
    for key, value in MLFLOW_BOUNDS.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted", category=UserWarning)
    sync = Sync(args.runs_dir, args.tracking_uri)
    try:
        report = sync.run()
    except Unreachable as err:
        print(f"[sync] stopped: {err}\n{sync.report.summary()}", file=sys.stderr)
        return 1
    print(report.summary())
    return 1 if report.lines["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
