"""Token-level code completion (py150, javaCorpus): teacher-forced next-token accuracy, scored in
the dataset's own whitespace-token space as the official evaluator does, whatever the model's
subword tokenizer.

A text is cut into windows of the model's length that overlap by one subword, so every subword
after the first is predicted exactly once from the gold prefix of its window. A whitespace token is
predicted correctly when every subword of it is; otherwise its prediction is the decoded subword
predictions with whitespace removed. A subword belongs to the whitespace token holding its last
character (a whitespace-only subword belongs to the token after it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tasks.base import Task
from tasks.encoding import bos, iter_rows, lm_blocks, render, template_fields
from tasks.official import write_official

MISSING = "<unk>"  # a whitespace token the model produced no characters for


def token_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def char_owners(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """Whitespace token index of every character; whitespace belongs to the token after it."""
    owners, k = [], 0
    for c in range(len(text)):
        while k < len(spans) and c >= spans[k][1]:
            k += 1
        owners.append(k)
    return owners


@dataclass
class TokenCompletionTask(Task):
    text_template: str = "{code}"
    families: tuple[str, ...] = ("decoder",)

    def head(self, family: str) -> str:
        return "causal_lm"

    def text(self, row: dict) -> str:
        return render(self.text_template, row)

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        """Training: the texts packed into full causal-LM blocks (attention within each text).
        Prediction: overlapping windows with their start; a row's first window (start 0) carries
        what maps its subwords back to whitespace tokens."""
        if for_training:
            return self.encode_documents([{"text": self.text(row)} for row in rows], tokenizer, family, max_length)
        out = []
        for row in rows:
            text = self.text(row)
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = bos(tokenizer) + enc["input_ids"]
            owners = char_owners(text, token_spans(text))
            owner = [-1] * len(bos(tokenizer)) + [owners[b - 1] if b > a else -1 for a, b in enc["offset_mapping"]]
            for n, (start, window) in enumerate(lm_blocks(ids, max_length)):
                first = n == 0
                out.append({"input_ids": window, "start": start, "ids": ids if first else [],
                            "owner": owner if first else [], "tokens": text.split() if first else []})
        return out

    def predict(self, model, tokenizer, features, collate, trainer, device) -> list[list[str]]:
        """Windows are read in order, a batch at a time; a row's whitespace tokens are assembled as
        soon as its last window is predicted, so memory holds one row, not the split."""
        from harness.predict import next_token_argmax, progress, rows_at

        out: list[list[str]] = []
        head, predicted, size = None, [], trainer.eval_batch_size
        for lo in progress(range(0, len(features), size), -(-len(features) // size), "predict"):
            chunk = rows_at(features, range(lo, min(lo + size, len(features))))
            best = next_token_argmax(model, [f["input_ids"] for f in chunk], tokenizer.pad_token_id, size, device)
            for f, preds in zip(chunk, best):
                if f["start"] == 0:
                    if head is not None:
                        out.append(self._to_tokens(head, predicted, tokenizer))
                    head, predicted = f, [None] * len(f["ids"])
                predicted[f["start"] + 1: f["start"] + 1 + len(preds)] = preds
        if head is not None:
            out.append(self._to_tokens(head, predicted, tokenizer))
        return out

    @staticmethod
    def _to_tokens(head: dict, predicted: list, tokenizer) -> list[str]:
        pieces: dict[int, list[int]] = {}
        for j, k in enumerate(head["owner"]):
            if k >= 0:
                pieces.setdefault(k, []).append(j)
        out = []
        for k, gold in enumerate(head["tokens"]):
            js = pieces.get(k, [])
            if js and all(predicted[j] == head["ids"][j] for j in js):
                out.append(gold)
                continue
            text = tokenizer.decode([predicted[j] for j in js if predicted[j] is not None])
            out.append("".join(text.split()) or MISSING)
        return out

    def references(self, rows) -> list[list[str]]:
        return [self.text(row).split() for row in iter_rows(rows, template_fields(self.text_template))]

    def write_predictions(self, rows, predictions: list[list[str]], out_dir: Path) -> dict[str, Path]:
        return write_official(self.metric, range(len(rows)), self.references(rows), predictions, out_dir)
