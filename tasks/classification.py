"""Classification of one text or a pair of texts (clone detection, defect detection, WebQuery)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tasks.base import Task


@dataclass
class ClassificationTask(Task):
    text_fields: Sequence[str] = ("func",)
    label_field: str = "target"
    labels: Sequence = (False, True)
    prediction_line: str = "{id}\t{prediction}"   # the official predictions file, one row per line
    gold_line: str = "{id}\t{gold}"               # the official answers file
    gold_file: str = "answers.txt"

    def head(self, family: str) -> str:
        return "sequence_classification"

    def model_kwargs(self) -> dict:
        return {"num_labels": len(self.labels)}

    def collator(self, tokenizer, family: str):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        """Token ids per row (one text, or a pair truncated longest-first) with the label index."""
        texts = [[row[f] for row in rows] for f in self.text_fields]
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
        return [{"input_ids": ids, "attention_mask": mask, "labels": y}
                for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], self.references(rows))]

    def references(self, rows: list[dict]) -> list[int]:
        return [list(self.labels).index(row[self.label_field]) for row in rows]

    def write_predictions(self, rows: list[dict], predictions: list[int], out_dir: Path) -> dict[str, Path]:
        """Predictions and gold answers in the official CodeXGLUE text format of the task."""
        out_dir.mkdir(parents=True, exist_ok=True)
        pred_path, gold_path = out_dir / "predictions.txt", out_dir / self.gold_file
        pred_path.write_text("".join(self.prediction_line.format(**row, prediction=p) + "\n"
                                     for row, p in zip(rows, predictions)))
        gold_path.write_text("".join(self.gold_line.format(**row, gold=y) + "\n"
                                     for row, y in zip(rows, self.references(rows))))
        return {"predictions": pred_path, "gold": gold_path}

    def predict(self, model, tokenizer, features: list[dict], collate, trainer, device) -> list[int]:
        from harness.predict import predict_classes

        return predict_classes(model, features, collate, trainer.eval_batch_size, device)
