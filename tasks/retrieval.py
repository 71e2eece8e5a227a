"""Retrieval tasks: POJ-104 clone retrieval (MAP@R) and AdvTest code search (MRR).

Every family embeds a text by mean-pooling its last hidden states (encoder-decoders: the encoder).
Training is contrastive with in-batch negatives (InfoNCE, both directions). Prediction embeds the
whole test split once and ranks each query against the whole pool, chunked over queries
(metrics.retrieval.rank_by_similarity), never against a per-batch pool.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from metrics import formats
from tasks.base import Task
from tasks.encoding import render


@dataclass
class RetrievalTask(Task):
    code_template: str = "{code}"
    query_template: str | None = None    # None: every code is a query of its own (clone retrieval)
    group_field: str | None = None       # codes with the same value are relevant to each other
    query_max_length: int = 128
    temperature: float = 0.05
    top_k: int | None = 100              # ranked answers written per query (AdvTest: 100)
    answer_key: str = "url"              # official predictions key: "url" (AdvTest), "index" (POJ-104)
    answer_field: str = "url"            # the row field that fills it

    def head(self, family: str) -> str:
        return "embedding"

    def _groups(self, rows: list[dict]) -> list[int]:
        names: dict = {}
        return [names.setdefault(r[self.group_field], len(names)) for r in rows]

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        codes = tokenizer([render(self.code_template, r) for r in rows], truncation=True,
                          max_length=max_length)["input_ids"]
        if self.query_template is not None:
            pairs = tokenizer([render(self.query_template, r) for r in rows], truncation=True,
                              max_length=min(self.query_max_length, max_length))["input_ids"]
            return [{"input_ids": c, "pair_input_ids": q} for c, q in zip(codes, pairs)]
        groups = self._groups(rows)
        return [{"input_ids": codes[i], "pair_input_ids": codes[self._partner(groups, i)], "group": g}
                for i, g in enumerate(groups)]

    @staticmethod
    def _partner(groups: list[int], i: int) -> int:
        """The next item of the same group (cyclically); an item alone is its own positive."""
        same = [j for j, g in enumerate(groups) if g == groups[i]]
        return same[(same.index(i) + 1) % len(same)]

    def loss(self, model, batch: dict) -> torch.Tensor:
        """InfoNCE over the batch; other items of the anchor's own group are not negatives."""
        from harness.predict import encoder_states, mean_pool

        def pooled(key: str) -> torch.Tensor:
            mask = batch[key.replace("input_ids", "attention_mask")]
            return torch.nn.functional.normalize(mean_pool(encoder_states(model, batch[key], mask), mask), dim=-1)

        a, b = pooled("input_ids"), pooled("pair_input_ids")
        logits = a @ b.T / self.temperature
        target = torch.arange(len(a), device=logits.device)
        if "group" in batch:
            same = batch["group"][:, None] == batch["group"][None, :]
            logits = logits.masked_fill(same & ~torch.eye(len(a), dtype=torch.bool, device=logits.device), -1e4)
        ce = torch.nn.functional.cross_entropy
        return (ce(logits, target) + ce(logits.T, target)) / 2

    def predict(self, model, tokenizer, features: list[dict], collate, trainer, device) -> list[list[int]]:
        """Ranked pool positions per query: POJ-104 lists exactly R others; AdvTest the top_k."""
        from harness.predict import embed
        from metrics.retrieval import rank_by_similarity

        size, pad = trainer.eval_batch_size, tokenizer.pad_token_id
        codes = embed(model, [f["input_ids"] for f in features], pad, size, device).numpy()
        if self.query_template is not None:
            queries = embed(model, [f["pair_input_ids"] for f in features], pad, size, device).numpy()
            return rank_by_similarity(queries, codes, top_k=self.top_k).tolist()
        groups = [f["group"] for f in features]
        ranked = rank_by_similarity(codes, codes, top_k=None).tolist()
        return [[j for j in ranked[i] if j != i][: groups.count(groups[i]) - 1] for i in range(len(groups))]

    def references(self, rows: list[dict]) -> list:
        """POJ-104: each item's group label; AdvTest: each query's own position in the pool."""
        return self._groups(rows) if self.query_template is None else list(range(len(rows)))

    def write_predictions(self, rows: list[dict], predictions: list[list[int]], out_dir: Path) -> dict[str, Path]:
        """Official files: answers JSONL keyed by url (AdvTest, gold idx) or index (POJ-104, label),
        and predictions JSONL `{key: ..., "answers": [ranked ids]}`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        keys = [str(r[self.answer_field]) for r in rows]
        ids = [r[self.id_field] for r in rows]
        gold_path, pred_path = out_dir / "answers.jsonl", out_dir / "predictions.jsonl"
        if self.query_template is None:
            gold = [{"index": k, "label": r[self.group_field]} for k, r in zip(keys, rows)]
            ranked = [[keys[j] for j in p] for p in predictions]
        else:
            gold = [{"url": k, "idx": i} for k, i in zip(keys, ids)]
            ranked = [[ids[j] for j in p] for p in predictions]
        gold_path.write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in gold), encoding="utf-8")
        formats.write_ranked(pred_path, zip(keys, ranked), self.answer_key)
        return {"predictions": pred_path, "gold": gold_path}
