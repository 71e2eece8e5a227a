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
from tasks.encoding import bos, lm_blocks, lm_feature, render
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
        """Training: causal-LM windows. Prediction: the same windows, tagged with their row and
        start, the first one carrying what maps subwords back to whitespace tokens."""
        out = []
        for r, row in enumerate(rows):
            text = self.text(row)
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = bos(tokenizer) + enc["input_ids"]
            owners = char_owners(text, token_spans(text))
            owner = [-1] * len(bos(tokenizer)) + [owners[b - 1] if b > a else -1 for a, b in enc["offset_mapping"]]
            for n, (start, window) in enumerate(lm_blocks(ids, max_length)):
                if for_training:
                    if len(window) > 1:
                        out.append(lm_feature(window))
                    continue
                feature = {"input_ids": window, "row": r, "start": start}
                if n == 0:
                    feature.update(ids=ids, owner=owner, tokens=text.split())
                out.append(feature)
        return out

    def predict(self, model, tokenizer, features: list[dict], collate, trainer, device) -> list[list[str]]:
        from harness.predict import next_token_argmax

        windows = [f for f in features if "row" in f]
        best = next_token_argmax(model, [f["input_ids"] for f in windows], tokenizer.pad_token_id,
                                 trainer.eval_batch_size, device)
        heads = {f["row"]: f for f in windows if "tokens" in f}
        predicted = {r: [None] * len(h["ids"]) for r, h in heads.items()}
        for f, preds in zip(windows, best):
            predicted[f["row"]][f["start"] + 1: f["start"] + 1 + len(preds)] = preds
        return [self._to_tokens(heads[r], predicted[r], tokenizer) for r in sorted(heads)]

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

    def references(self, rows: list[dict]) -> list[list[str]]:
        return [self.text(row).split() for row in rows]

    def write_predictions(self, rows: list[dict], predictions: list[list[str]], out_dir: Path) -> dict[str, Path]:
        return write_official(self.metric, range(len(rows)), self.references(rows), predictions, out_dir)
