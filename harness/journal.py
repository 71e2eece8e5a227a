"""The journal a cell keeps of its tracking calls: `<out_dir>/tracking/journal.jsonl`, one JSON
object a line, written by harness.outbox as the cell goes and read back by harness.sync.

Lines: a header (`record: header`: scope cell or sweep, sync_id, the tracker's class, URI,
experiment and artifact root, host, pid), then one line per call in order (`call`: start,
log_params, log_metrics, log_artifact, log_table, log_dataset, set_tags, end, with their arguments,
a `seq` and a `ts` in epoch ms), `event: unheld` where the tracker stopped holding the cell (and
why), and `event: synced` lines that harness.sync appends once a store holds the cell whole.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL = Path("tracking") / "journal.jsonl"
TABLES = Path("tracking") / "tables"  # log_table's data, kept for replay


def now_ms() -> int:
    return int(time.time() * 1000)


class Journal:
    """Append-only JSON lines, one per call, flushed as they come (a kill loses at most the last)."""

    def __init__(self, out_dir: Path, header: dict):
        self.path = out_dir / JOURNAL
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and (old := read(self.path)).unheld and not old.synced:
            print(f"[harness] warning: {self.path} held a cell that was never synced; this run in the same "
                  "directory replaces it (its files are overwritten anyway)", flush=True)
        self.path.write_text("")
        self.seq = 0
        self.write({"record": "header", **header})

    def write(self, record: dict) -> None:
        self.seq += 1
        line = json.dumps({"seq": self.seq, "ts": now_ms(), **record}, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

@dataclass
class Entries:
    """A journal read back: its header, the calls in order, and what happened to it."""
    path: Path
    header: dict
    calls: list[dict] = field(default_factory=list)
    unheld: dict | None = None
    synced: list[dict] = field(default_factory=list)

    @property
    def out_dir(self) -> Path:
        return self.path.parent.parent

    @property
    def scope(self) -> str:
        return self.header.get("scope", "cell")

    def first(self, call: str) -> dict | None:
        return next((c for c in self.calls if c["call"] == call), None)


def read(path: Path) -> Entries:
    """The journal at `path`; a line cut short by a kill (only the last can be) is left out."""
    entries = Entries(Path(path), {})
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("record") == "header":
            entries.header = record
        elif record.get("event") == "unheld":
            entries.unheld = record
        elif record.get("event") == "synced":
            entries.synced.append(record)
        elif "call" in record:
            entries.calls.append(record)
    return entries


def mark_synced(path: Path, uri: str, run_id: str) -> None:
    line = json.dumps({"seq": None, "ts": now_ms(), "event": "synced", "uri": uri, "run_id": run_id})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
