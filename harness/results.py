"""result.json: the record of one cell (the contract fields in DESIGN.md)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.files import atomic
from harness.redact import redact

FINISHED, FAILED, SKIPPED = "FINISHED", "FAILED", "SKIPPED"


@dataclass
class Result:
    status: str
    task: str
    model: str
    method: str
    seed: int
    config_hash: str
    metric: str | None = None        # the official evaluator's task name (metrics.compute)
    primary_metric: str | None = None
    primary_value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)          # unrounded, official scale
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)  # multi-task cells: member -> metrics
    confidence_intervals: dict[str, list[float]] = field(default_factory=dict)
    untrained_metrics: dict[str, float] = field(default_factory=dict)  # same model, before training
    cost: dict[str, float] = field(default_factory=dict)
    reason: str | None = None        # why SKIPPED or FAILED
    mlflow_run_id: str | None = None
    data_digest: str | None = None
    data: dict = field(default_factory=dict)  # source, revision, splits, comparable, why_not_comparable
    files: dict[str, str] = field(default_factory=dict)
    naive: str | None = None                 # the task's naive baseline (majority, copy_source, ...)
    naive_metrics: dict[str, float] = field(default_factory=dict)  # its scores on the same test split
    prediction_distribution: dict[str, int] | None = None          # predicted classes (classification)
    device: str | None = None
    retention: dict | None = None  # forgetting on held-out code: provenance, scores or why not measurable
    tracking: dict | None = None  # does the tracker hold this cell? {held, reason, ...} (harness.outbox)

    def write(self, out_dir: Path) -> Path:
        """Atomic write: a reader never sees a half-written result.json."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "result.json"
        with atomic(path) as tmp:  # a full disk mid-write leaves the previous file (or none), never half of one
            tmp.write_text(json.dumps(redact(asdict(self)), indent=2, default=str) + "\n")  # no secret recorded
        return path

