"""One adapter trained on several tasks at once (MFTCoder-style multi-task fine-tuning).

`MultiTask` is a composite Task: its members are the tasks' own configs (conf/task/<name>.yaml with
their `defaults:` chain, harness.tokenizer.task_yaml) instantiated as in their own cells. Their
splits are mixed into one Arrow dataset (the union of their columns plus `task_index`), interleaved
in proportion to their sizes so that any prefix (trainer.max_*_examples) holds every member. Each
member encodes, predicts, scores and writes the official files of its own rows, exactly as its own
cell does; the loss is balanced across the tasks of a batch (tasks.multitask_loss). Scores are
flat, `<task>.<key>` for every member's metric plus `multitask.mean_primary` (the plain mean of the
members' primary values, each on its own scale), and `per_task` nests them by member.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.base import Task, column
from tasks.multitask_loss import BALANCES, balanced_loss, token_losses
from tasks.schema import DataError
from tasks.sources import Plan

TASK_COLUMN = "task_index"
MEAN = "multitask.mean_primary"
TOKEN_HEADS = ("causal_lm", "seq2seq_lm")  # heads whose loss is per target token (the balance needs it)


def member_names() -> list[str]:
    from harness.tokenizer import TASK_CONF

    return sorted(p.stem for p in TASK_CONF.glob("*.yaml"))


def config_problems(cfg) -> list[str]:
    """multitask.* checked before anything loads (harness.validate): member names, balance, gamma."""
    spec = cfg.get("multitask")
    if spec is None:
        return []
    names, known, problems = list(spec.get("tasks") or []), member_names(), []
    if len(names) < 2:
        problems.append(f"multitask.tasks={names}: must name at least two tasks of conf/task")
    for name in names:
        if name not in known:
            near = difflib.get_close_matches(str(name), known, n=1)
            problems.append(f"multitask.tasks: {name!r} is not a task of conf/task"
                            + (f" (did you mean {near[0]}?)" if near else "") + f"; allowed: {', '.join(known)}")
    if len(set(names)) != len(names):
        problems.append(f"multitask.tasks={names}: names a task twice")
    if spec.get("balance") not in BALANCES:
        problems.append(f"multitask.balance={spec.get('balance')!r}: must be one of {', '.join(BALANCES)}")
    gamma = spec.get("gamma", 2.0)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
        problems.append(f"multitask.gamma={gamma!r}: must be a number >= 0")
    return problems


def build(name: str, members: list[str], balance: str, gamma: float = 2.0,
          member_overrides: dict | None = None) -> "MultiTask":
    """The composite of the named tasks, each instantiated from its own YAML as its cell would;
    member_overrides (multitask.member_overrides) is merged into every member's config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from harness.tokenizer import task_yaml

    configs = [OmegaConf.merge(task_yaml(m), member_overrides or {}) for m in members]
    return MultiTask(name=name, members=[instantiate(c, _convert_="all") for c in configs],
                     balance=balance, gamma=float(gamma))


@dataclass
class MultiPlan(Plan):
    """The members' plans side by side; specs and origins are prefixed `<task>/` so the merged
    identity (part of the config hash and the features key) covers every member's data."""
    members: dict[str, Plan] = field(default_factory=dict)


@dataclass
class _TaskIndexCollator:
    """The member collator, with each feature's task index carried into the batch."""
    inner: Any

    def __call__(self, features: list[dict]):
        import torch

        batch = self.inner(features)
        batch[TASK_COLUMN] = torch.tensor([f[TASK_COLUMN] for f in features])
        return batch


@dataclass
class MultiTask(Task):
    members: list[Task] = field(default_factory=list)
    balance: str = "equal"
    gamma: float = 2.0

    def __init__(self, name: str, members: list[Task], balance: str, gamma: float = 2.0):
        super().__init__(name=name, kind="multitask", metric="multitask", primary_metric=MEAN, schema={},
                         source={})
        self.members, self.balance, self.gamma = members, balance, gamma
        self.max_source_length = max(m.max_source_length for m in members)
        self.max_target_length = max(m.max_target_length for m in members)

    # ---- compatibility and model ---------------------------------------------------------------
    def head(self, family: str) -> str:
        return self.members[0].head(family)

    def model_kwargs(self) -> dict:
        return self.members[0].model_kwargs()

    def unsupported(self, family: str, documents: frozenset = frozenset()) -> str | None:
        if documents:
            return f"multitask {self.label()}: a member trains on documents ({sorted(documents)}); mix example tasks only"
        for member in self.members:
            if reason := member.unsupported(family):
                return f"multitask {self.label()}: {reason}"
        heads = {m.name: m.head(family) for m in self.members}
        if len(set(heads.values())) > 1 or len({repr(m.model_kwargs()) for m in self.members}) > 1:
            return (f"multitask {self.label()}: members must share one model head on {family}, got "
                    + ", ".join(f"{k}: {v}" for k, v in heads.items()))
        if self.head(family) not in TOKEN_HEADS:
            return (f"multitask {self.label()}: loss balancing needs a token-level head ({', '.join(TOKEN_HEADS)}); "
                    f"these members train {self.head(family)}")
        return None

    def label(self) -> str:
        return "+".join(m.name for m in self.members)

    def train_shape(self, family: str, max_length: int) -> dict[str, int]:
        shapes = [m.train_shape(family, min(m.max_source_length, max_length)) for m in self.members]
        return {k: max(s.get(k, 0) for s in shapes) for k in {k for s in shapes for k in s}}

    # ---- data -----------------------------------------------------------------------------------
    def data_plan(self, hub_mirror: str | None = None) -> MultiPlan:
        plans = {m.name: m.data_plan(hub_mirror) for m in self.members}
        specs = {f"{t}/{s}": {**spec, "origin": f"{t}/{spec['origin']}"}
                 for t, p in plans.items() for s, spec in p.specs.items()}
        origins = {f"{t}/{k}": o for t, p in plans.items() for k, o in p.origins.items()}
        why_not = [f"{t}: {p.why_not_comparable}" for t, p in plans.items() if p.why_not_comparable]
        return MultiPlan(kind="+".join(sorted({p.kind for p in plans.values()})),
                         why="; ".join(f"{t}: {p.why}" for t, p in plans.items()), specs=specs, origins=origins,
                         comparable=all(p.comparable for p in plans.values()),
                         why_not_comparable="; ".join(why_not) or None,
                         documents=frozenset(d for p in plans.values() for d in p.documents), members=plans)

    def load_data(self, plan: MultiPlan, tokenizer=None):
        from tasks.loading import TaskData

        data = [m.load_data(plan.members[m.name], tokenizer) for m in self.members]
        splits = set.intersection(*(set(d.splits) for d in data))
        mixed = {s: mix([d.splits[s] for d in data], f"multitask {self.label()} split {s!r}") for s in sorted(splits)}
        return TaskData(mixed, plan, frozenset(s for d in data for s in d.documents))

    # ---- features, loss, prediction -------------------------------------------------------------
    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        """Each member encodes its own rows, with its own length limit, as in its own cell."""
        out: list[dict | None] = [None] * len(rows)
        for index, positions in _groups([r[TASK_COLUMN] for r in rows]).items():
            member = self.members[index]
            found = member.encode([rows[p] for p in positions], tokenizer, family,
                                  min(member.max_source_length, max_length), for_training)
            if len(found) != len(positions):
                raise ValueError(f"multitask: {member.name} made {len(found)} features of {len(positions)} rows")
            for p, feature in zip(positions, found):
                out[p] = {**feature, TASK_COLUMN: index}
        return out  # type: ignore[return-value]

    def collator(self, tokenizer, family: str):
        return _TaskIndexCollator(self.members[0].collator(tokenizer, family))

    def loss(self, model, batch: dict):
        batch = dict(batch)
        task = batch.pop(TASK_COLUMN)
        return balanced_loss(*token_losses(model, batch), task, self.balance, self.gamma)

    def predict(self, model, tokenizer, features, collate, trainer, device) -> list:
        out: list = [None] * len(features)
        for index, positions in _groups(column(features, TASK_COLUMN)).items():
            found = self.members[index].predict(model, tokenizer, features.select(positions), collate, trainer, device)
            for p, prediction in zip(positions, found):
                out[p] = prediction
        return out

    # ---- scoring and files ----------------------------------------------------------------------
    def _parts(self, rows, predictions: list):
        """(member, its rows, its predictions), each in the member's own row order."""
        for index, positions in _groups(column(rows, TASK_COLUMN)).items():
            yield self.members[index], rows.select(positions), [predictions[p] for p in positions]

    def score(self, rows, predictions: list) -> dict[str, float]:
        per_task = {m.name: m.score(r, p) for m, r, p in self._parts(rows, predictions)}
        flat = {f"{t}.{k}": v for t, scores in per_task.items() for k, v in scores.items()}
        primaries = [per_task[m.name][m.primary_metric] for m in self.members if m.name in per_task]
        return {MEAN: sum(primaries) / len(primaries), **flat}

    def per_task(self, scores: dict[str, float]) -> dict[str, dict[str, float]]:
        """Flat `<task>.<key>` scores nested by member: result.json `per_task`."""
        return {m.name: {k[len(m.name) + 1:]: v for k, v in scores.items() if k.startswith(f"{m.name}.")}
                for m in self.members}

    def references(self, rows) -> list:
        out: list = [None] * len(rows)
        for index, positions in _groups(column(rows, TASK_COLUMN)).items():
            for p, ref in zip(positions, self.members[index].references(rows.select(positions))):
                out[p] = ref
        return out

    def confidence_intervals(self, rows, predictions: list, n_resamples: int, seed: int) -> dict[str, list[float]]:
        return {f"{m.name}.{k}": v for m, r, p in self._parts(rows, predictions)
                for k, v in m.confidence_intervals(r, p, n_resamples, seed).items()}

    def write_predictions(self, rows, predictions: list, out_dir: Path) -> dict[str, Path]:
        """Each member's official files in `out_dir/<task>/`, as its own cell writes them."""
        return {f"{m.name}/{k}": v for m, r, p in self._parts(rows, predictions)
                for k, v in m.write_predictions(r, p, Path(out_dir) / m.name).items()}

    def example_columns(self, files: dict[str, Path]) -> dict[str, list]:
        columns: dict[str, list] = {"task": []}
        for member in self.members:
            own = member.example_columns({k.split("/", 1)[1]: v for k, v in files.items()
                                          if k.startswith(f"{member.name}/")})
            n, before = len(own["reference"]), len(columns["task"])
            for key in set(columns) | set(own):
                columns.setdefault(key, [None] * before).extend(own.get(key, [None] * n) if key != "task" else [member.name] * n)
        return columns


def mix(parts: list, where: str):
    """One dataset of the members' rows: the union of their columns (absent ones null), a
    `task_index` column, interleaved by position/size so every prefix holds each member's share."""
    from datasets import Value, concatenate_datasets

    features: dict = {}
    for ds in parts:
        for name, feature in ds.features.items():
            if features.setdefault(name, feature) != feature:
                raise DataError(f"{where}: column {name!r} is {features[name]} in one member and {feature} in "
                                f"another; members must agree on shared column types")
    aligned = []
    for index, ds in enumerate(parts):
        for name, feature in features.items():
            if name not in ds.column_names:
                ds = ds.add_column(name, [None] * len(ds), feature=feature)
        ds = ds.add_column(TASK_COLUMN, [index] * len(ds), feature=Value("int32"))
        aligned.append(ds.select_columns([*features, TASK_COLUMN]))
    starts = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]
    order = sorted(((j + 0.5) / len(p), i, starts[i] + j) for i, p in enumerate(parts) for j in range(len(p)))
    return concatenate_datasets(aligned).select([k for _, _, k in order])


def _groups(indices) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for position, index in enumerate(indices):
        groups[int(index)].append(position)
    return dict(groups)
