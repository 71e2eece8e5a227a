"""Classification of one text or a pair of texts (clone detection, defect detection, WebQuery)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tasks.base import Task, column
from tasks.encoding import token_ids
from tasks.official import write_official


@dataclass
class ClassificationTask(Task):
    text_fields: Sequence[str] = ("func",)
    label_field: str = "target"
    labels: Sequence = (False, True)
    key_fields: Sequence[str] = ("id",)  # the row fields that form an example's official id

    def head(self, family: str) -> str:
        return "sequence_classification"

    def model_kwargs(self) -> dict:
        return {"num_labels": len(self.labels)}

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        """Token ids per row (one text, or a pair truncated longest-first) with the label index."""
        texts = [[row[f] for row in rows] for f in self.text_fields]
        ids = token_ids(tokenizer, texts[0], texts[1] if len(texts) > 1 else None, max_length)
        return [{"input_ids": x, "labels": y} for x, y in zip(ids, self.references(rows))]

    def references(self, rows) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[value] for value in column(rows, self.label_field)]

    def naive_predictions(self, train_rows, test_rows) -> list[int] | None:
        """majority: the most frequent class of the train split, for every test row."""
        if self.naive != "majority":
            return None
        majority = Counter(self.references(train_rows)).most_common(1)[0][0]
        return [majority] * len(test_rows)

    def prediction_distribution(self, predictions: list[int]) -> dict[str, int]:
        counts = Counter(predictions)
        return {str(label): counts.get(i, 0) for i, label in enumerate(self.labels)}

    def write_predictions(self, rows, predictions: list[int], out_dir: Path) -> dict[str, Path]:
        """Predictions and gold answers in the official CodeXGLUE files of the metric."""
        fields = [column(rows, f) for f in self.key_fields]
        keys = list(zip(*fields)) if len(fields) > 1 else fields[0]
        return write_official(self.metric, keys, self.references(rows), predictions, out_dir)

    def predict(self, model, tokenizer, features, collate, trainer, device) -> list[int]:
        from harness.predict import predict_classes

        return predict_classes(model, features, collate, trainer.eval_batch_size, device)
