"""What every task kind implements (`Task`), and what they share: data, collation, scoring.

A task is data (its YAML in conf/task/); the classes here turn that data into features, predictions
in the official file format, and scores from `metrics`. Rows are Arrow datasets (or, in tests, lists
of dicts); `column(rows, field)` reads one field of either.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import metrics


def column(rows, name: str) -> list:
    """One field of every row: a column read from an Arrow dataset, or gathered from dicts."""
    return rows[name] if hasattr(rows, "column_names") else [row[name] for row in rows]


@dataclass
class Task(ABC):
    name: str
    kind: str
    metric: str
    primary_metric: str
    schema: Mapping[str, str]
    source: Mapping[str, Any]
    id_field: str | None = None
    data_dir: str | None = None
    allowed_values: Mapping[str, list] = field(default_factory=dict)
    max_source_length: int = 256
    max_target_length: int = 128
    families: tuple[str, ...] = ("encoder", "decoder", "seq2seq")
    required_splits: tuple[str, ...] = ("train", "test")
    metric_kwargs: Mapping[str, Any] = field(default_factory=dict)  # e.g. lang= for CodeBLEU
    tokenizer_fields: Sequence[str] = ()  # text fields the offline tiny tokenizer is trained on
    baselines: Sequence[Mapping[str, Any]] = ()  # published results: {model, scores: {key: value}, source}
    syntax_language: str | None = None  # code outputs: also report syntax_valid_rate (metrics/syntax_validity.py)
    naive: str | None = None  # the task's naive baseline: majority | copy_source | most_frequent (None: none applies)

    # ---- what each kind implements --------------------------------------------------------------
    @abstractmethod
    def head(self, family: str) -> str:
        """The model head this task trains on a family (a key of harness.models.HEADS)."""

    @abstractmethod
    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        """Features of a batch of rows: token ids and, for training, labels. Every feature of a
        task has the same keys (they become Arrow columns)."""

    @abstractmethod
    def predict(self, model, tokenizer, features, collate, trainer, device) -> list:
        """Predictions for the test features, in row order, streamed in batches."""

    @abstractmethod
    def references(self, rows) -> list:
        """Gold values of the rows, as metrics.compute(self.metric, ...) takes them."""

    @abstractmethod
    def write_predictions(self, rows, predictions: list, out_dir: Path) -> dict[str, Path]:
        """Gold and predictions in the task's official CodeXGLUE file format."""

    # ---- shared behaviour -------------------------------------------------------------------------
    def unsupported(self, family: str, documents: frozenset = frozenset()) -> str | None:
        """Why this task cannot run on a model family, or None when it can. A train split of
        documents (continued pretraining, as line completion trains on the hub) needs a decoder."""
        if family not in self.families:
            return f"task {self.name} ({self.kind}) needs a model family in {list(self.families)}, got {family}"
        if "train" in documents and family != "decoder":
            return (f"task {self.name} trains on documents here (continued pretraining of a causal LM), "
                    f"which needs a decoder, got {family}")
        return None

    def model_kwargs(self) -> dict:
        """Extra from_pretrained arguments of the task's head (num_labels for classification)."""
        return {}

    def naive_predictions(self, train_rows, test_rows) -> list | None:
        """What the task's naive baseline predicts for the test rows (`naive` in its YAML), or None."""
        return None

    def prediction_distribution(self, predictions: list) -> dict[str, int] | None:
        """How often each answer was predicted, where answers are classes (degenerate runs show here)."""
        return None

    def train_shape(self, family: str, max_length: int) -> dict[str, int]:
        """The longest training sequences this task makes for a family (the memory estimate's
        batch): {"input": tokens, "target": decoder tokens (seq2seq), "pair": paired input tokens}."""
        return {"input": max_length}

    def prepare(self, rows):
        """Columns the whole split decides (a retrieval item's partner), before batched encoding."""
        return rows

    def encode_documents(self, rows: list[dict], tokenizer, family: str, max_length: int) -> list[dict]:
        """Training documents {text} (continued pretraining), packed into full causal-LM blocks with
        attention kept within each document (tasks.encoding.pack)."""
        from tasks.encoding import bos, pack, plain_ids

        return pack([bos(tokenizer) + ids for ids in plain_ids(tokenizer, [r["text"] for r in rows])], max_length)

    def collator(self, tokenizer, family: str):
        """Pads a list of features into a batch (input ids, attention mask, labels)."""
        from tasks.encoding import PadCollator

        return PadCollator(tokenizer.pad_token_id)

    def loss(self, model, batch: dict):
        """Training loss of one batch: the head's own, except a causal LM's (labels per position, no
        encoder), which is computed over the labelled positions without the full logits
        (harness.losses: the same value, a fraction of the memory)."""
        from harness.losses import causal_lm_loss

        labels = batch.get("labels")
        if labels is not None and labels.dim() == 2 and not getattr(model.config, "is_encoder_decoder", False):
            return causal_lm_loss(model, batch)
        return model(**batch).loss

    def score(self, rows, predictions: list) -> dict[str, float]:
        scores = metrics.compute(self.metric, self.references(rows), list(predictions), **self.metric_kwargs)
        if self.syntax_language:  # next to the official metrics, never instead of one
            from metrics.syntax_validity import KEY, valid_rate

            scores[KEY] = valid_rate(predictions, self.syntax_language)
        return scores

    def per_task(self, scores: dict[str, float]) -> dict[str, dict[str, float]]:
        """Scores nested by member task (a multi-task cell, tasks.multitask); {} for one task."""
        return {}

    def example_columns(self, files: dict[str, Path]) -> dict[str, list]:
        """Per-example reference, prediction and scores, read back from the official files."""
        from metrics.registry import per_example, spec

        refs, preds = spec(self.metric).read(str(files["gold"]), str(files["predictions"]))
        return {"reference": refs, "prediction": preds, **per_example(self.metric, refs, preds)}

    def confidence_intervals(self, rows, predictions: list, n_resamples: int,
                             seed: int) -> dict[str, list[float]]:
        """Bootstrap 95% CI of every metric over the test examples (seeded)."""
        from metrics.bootstrap import confidence_interval

        found = confidence_interval(self.metric, self.references(rows), list(predictions),
                                    n_resamples=n_resamples, seed=seed, **self.metric_kwargs)
        return {k: [float(lo), float(hi)] for k, (lo, hi) in found.items()}

    def encoded_fields(self) -> list[str]:
        """The row fields the task encodes (what its `*_template`s and `text_fields` read): the text
        a contamination check compares (harness/contamination.py)."""
        import dataclasses

        from tasks.encoding import template_fields

        templates = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name.endswith("_template")]
        return template_fields(*templates, *("{%s}" % f for f in getattr(self, "text_fields", ())))

    # ---- data --------------------------------------------------------------------------------------
    def data_plan(self, hub_mirror: str | None = None):
        """Where the rows come from (tasks.sources): cheap, nothing is read."""
        from tasks.sources import plan

        return plan(self, hub_mirror)

    def load_data(self, plan, tokenizer=None):
        """The splits of a plan as validated Arrow datasets (tasks.loading.TaskData); tokenizer:
        the model's, for data whose size is counted in tokens (a streamed corpus)."""
        from tasks.loading import load

        return load(self, plan)

    def load_splits(self, hub_mirror: str | None = None) -> dict[str, Any]:
        return self.load_data(self.data_plan(hub_mirror)).splits
