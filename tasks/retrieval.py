"""Retrieval tasks: POJ-104 clone retrieval (MAP@R), AdvTest code search (MRR) and CodeSearchNet
code search (MRR within pools of 1,000, metrics/codesearchnet.py).

Every family embeds a text by mean-pooling its last hidden states (encoder-decoders: the encoder).
Training is contrastive with in-batch negatives (InfoNCE, both directions). Prediction embeds the
whole test split once and ranks each query against the whole pool, chunked over queries
(metrics.retrieval.rank_by_similarity), never against a per-batch pool, unless the task sets
`pool_size`: then the test split is cut into pools as the CodeSearchNet challenge cuts it, and each
item is ranked within its own pool only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tasks.base import Task, column
from tasks.encoding import iter_rows, render, template_fields, token_ids
from tasks.official import write_official


@dataclass
class RetrievalTask(Task):
    code_template: str = "{code}"
    query_template: str | None = None    # None: every code is a query of its own (clone retrieval)
    group_field: str | None = None       # codes with the same value are relevant to each other
    query_max_length: int = 128
    temperature: float = 0.05
    top_k: int | None = 100              # ranked answers written per query (AdvTest: 100)
    answer_field: str = "url"            # the row field that fills it
    pool_size: int | None = None         # None: rank against the whole test split; N: pools of N pairs
    pool_seed: int | None = None         # pools: shuffle the test rows with numpy's seed first (None: in order)
    pool_anchor: str = "query"           # pools: whose partner is ranked, a query's code or a code's query

    def __post_init__(self) -> None:
        from metrics.codesearchnet import ANCHORS

        if self.pool_size is None:
            return
        where = f"task {self.name}"
        if self.query_template is None:
            raise ValueError(f"{where}: pool_size needs query_template (pools rank (query, code) pairs)")
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int) or self.pool_size < 1:
            raise ValueError(f"{where}: pool_size is {self.pool_size!r}; expected a positive integer or null")
        if self.pool_anchor not in ANCHORS:
            raise ValueError(f"{where}: pool_anchor is {self.pool_anchor!r}; expected one of {list(ANCHORS)}")

    def pools(self, n: int) -> list:
        """Row positions of each pool of a test split of n rows (metrics.codesearchnet.pools)."""
        from metrics.codesearchnet import pools

        return pools(n, self.pool_size, self.pool_seed)

    def head(self, family: str) -> str:
        return "embedding"

    def train_shape(self, family: str, max_length: int) -> dict[str, int]:
        pair = max_length if self.query_template is None else min(self.query_max_length, max_length)
        return {"input": max_length, "pair": pair}

    def _groups(self, rows) -> list[int]:
        names: dict = {}
        return [names.setdefault(value, len(names)) for value in column(rows, self.group_field)]

    def prepare(self, rows):
        """Clone retrieval: each item's positive is the next item of its group (cyclically; an item
        alone is its own), found for the whole split at once in O(n) and stored as a column."""
        if self.query_template is not None:
            return rows
        groups = self._groups(rows)
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        partner = [0] * len(groups)
        for same in members.values():
            for k, i in enumerate(same):
                partner[i] = same[(k + 1) % len(same)]
        codes = [render(self.code_template, r) for r in iter_rows(rows, template_fields(self.code_template))]
        extra = {"group": groups, "partner_code": [codes[j] for j in partner]}
        if hasattr(rows, "column_names"):
            for name, values in extra.items():
                rows = rows.add_column(name, values)
            return rows
        return [{**r, **{k: v[i] for k, v in extra.items()}} for i, r in enumerate(rows)]

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        codes = token_ids(tokenizer, [render(self.code_template, r) for r in rows], max_length=max_length)
        if self.query_template is not None:
            pairs = token_ids(tokenizer, [render(self.query_template, r) for r in rows],
                              max_length=min(self.query_max_length, max_length))
            return [{"input_ids": c, "pair_input_ids": q} for c, q in zip(codes, pairs)]
        pairs = token_ids(tokenizer, [r["partner_code"] for r in rows], max_length=max_length)
        return [{"input_ids": c, "pair_input_ids": p, "group": r["group"]} for c, p, r in zip(codes, pairs, rows)]

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
        """Ranked pool positions per query: POJ-104 lists exactly R others; AdvTest the top_k;
        pools (CodeSearchNet): one rank per pooled item, the rank of its partner in its pool."""
        from collections import Counter

        from harness.predict import Sequences, embed
        from metrics.retrieval import rank_by_similarity

        size, pad = trainer.eval_batch_size, tokenizer.pad_token_id
        codes = embed(model, Sequences(features), pad, size, device).numpy()
        if self.query_template is not None:
            queries = embed(model, Sequences(features, "pair_input_ids"), pad, size, device).numpy()
            if self.pool_size is not None:  # the rank of each pooled item's partner, pool after pool
                from metrics.codesearchnet import pool_ranks
                return pool_ranks(queries, codes, self.pools(len(codes)), self.pool_anchor).tolist()
            return rank_by_similarity(queries, codes, top_k=self.top_k).tolist()
        groups = column(features, "group")
        sizes = Counter(groups)
        ranked = rank_by_similarity(codes, codes, top_k=max(sizes.values())).tolist()  # R + itself at most
        return [[j for j in ranked[i] if j != i][: sizes[g] - 1] for i, g in enumerate(groups)]

    def references(self, rows) -> list:
        """POJ-104: each item's group label; AdvTest: each query's own position in the pool; pools:
        the size of each pooled item's pool, pool after pool (rows in no pool are not scored)."""
        if self.pool_size is not None:
            return [len(pool) for pool in self.pools(len(rows)) for _ in pool]
        return self._groups(rows) if self.query_template is None else list(range(len(rows)))

    def write_predictions(self, rows, predictions: list[list[int]], out_dir: Path) -> dict[str, Path]:
        """Official files: POJ-104 keyed by index (gold: each item's problem label), AdvTest keyed
        by url (gold: each query's idx; answers: the idx of the ranked codes); pools: keyed by row
        (gold: url, pool, place and pool size; predictions: the rank, metrics/codesearchnet.py)."""
        answer = [str(k) for k in column(rows, self.answer_field)]
        if self.pool_size is not None:  # (row, url, pool, place in the pool) of each pooled item
            keys = [(int(i), answer[i], k, j)
                    for k, pool in enumerate(self.pools(len(rows))) for j, i in enumerate(pool)]
            return write_official(self.metric, keys, self.references(rows), predictions, out_dir)
        keys = answer if self.query_template is None else list(zip(answer, column(rows, self.id_field)))
        return write_official(self.metric, keys, self.references(rows), predictions, out_dir)
