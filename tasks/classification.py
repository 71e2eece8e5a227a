"""Classification of one text or a pair of texts (clone detection, defect detection, WebQuery)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tasks.base import Task, column
from tasks.encoding import iter_rows, template_fields, token_ids


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

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        """Token ids per row (one text, or a pair truncated longest-first) with the label index."""
        texts = [[row[f] for row in rows] for f in self.text_fields]
        ids = token_ids(tokenizer, texts[0], texts[1] if len(texts) > 1 else None, max_length)
        return [{"input_ids": x, "labels": y} for x, y in zip(ids, self.references(rows))]

    def references(self, rows) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[value] for value in column(rows, self.label_field)]

    def write_predictions(self, rows, predictions: list[int], out_dir: Path) -> dict[str, Path]:
        """Predictions and gold answers in the official CodeXGLUE text format of the task,
        written row by row."""
        out_dir.mkdir(parents=True, exist_ok=True)
        pred_path, gold_path = out_dir / "predictions.txt", out_dir / self.gold_file
        names = template_fields(self.prediction_line, self.gold_line)
        with open(pred_path, "w", encoding="utf-8") as pred, open(gold_path, "w", encoding="utf-8") as gold:
            for row, p, y in zip(iter_rows(rows, names), predictions, self.references(rows)):
                pred.write(self.prediction_line.format(**row, prediction=p) + "\n")
                gold.write(self.gold_line.format(**row, gold=y) + "\n")
        return {"predictions": pred_path, "gold": gold_path}

    def predict(self, model, tokenizer, features, collate, trainer, device) -> list[int]:
        from harness.predict import predict_classes

        return predict_classes(model, features, collate, trainer.eval_batch_size, device)
