"""Forgetting: the model's language-model loss on a held-out general code corpus, before and after training.

`trainer.retention=stdlib` scores a fixed slice of this machine's Python standard library,
`trainer.retention=DIR` a directory of the user's own code; both go through tasks/code_corpus.py
(the held-out `test` files by the stable hash of their path, so a DIR that is also the training
corpus is scored on files the cell never trains on), capped at `trainer.retention_max_tokens`.
Before = the loaded model before train(), after = the trained model: the same token windows, the
same batches, eval mode (no dropout), no gradient, the training RNG untouched. The loss is the mean
cross-entropy per predicted token over the whole slice; token accuracy the share of argmax hits.
A causal LM predicts every next token of a window; a seq2seq LM reads the window's first half
and predicts its second half. A model trained with another head (classification, embedding) has
no LM to score with: result.json records that, with the reason.
"""
from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from harness.env import Device

STDLIB = "stdlib"
LM_HEADS = {"causal_lm": False, "seq2seq_lm": True}  # heads whose output layer predicts tokens: encoder-decoder?
SCORES = tuple(f"{pre}{name}{post}" for name in ("loss", "token_accuracy")
               for pre, post in (("", "_before"), ("", "_after"), ("delta_", "")))


@dataclass
class Probe:
    """The corpus slice as token windows, with its provenance and the score before training."""
    windows: list[list[int]]
    record: dict                       # result.json `retention`: corpus, root, files, tokens, digest, ...
    seq2seq: bool = False
    before: dict[str, float] = field(default_factory=dict)


def before(cfg: DictConfig, task, model, tokenizer, device: Device) -> Probe | dict | None:
    """The probe scored on the untrained model; None when trainer.retention is null; a record
    {measurable: false, reason} when the trained model has no LM head."""
    trainer = cfg.trainer
    if trainer.get("retention") is None:
        return None
    head = task.head(cfg.model.family)
    if head not in LM_HEADS:
        return {"corpus": trainer.retention, "measurable": False,
                "reason": f"the model trains a {head} head on task {task.name}, not a language-model head "
                          f"({' or '.join(LM_HEADS)}), so it has no token loss on a code corpus"}
    probe = _probe(cfg, tokenizer, LM_HEADS[head])
    probe.before = score(model, probe, tokenizer.pad_token_id, trainer.eval_batch_size, device)
    return probe


def after(probe: Probe | dict | None, model, tokenizer, trainer: DictConfig, device: Device) -> dict | None:
    """result.json `retention` for the trained model (every process computes it: same numbers)."""
    if not isinstance(probe, Probe):
        return probe
    now = score(model, probe, tokenizer.pad_token_id, trainer.eval_batch_size, device)
    scores = {f"{name}_{when}": value for when, values in (("before", probe.before), ("after", now))
              for name, value in values.items()}
    scores.update({f"delta_{name}": now[name] - probe.before[name] for name in now})  # > 0 loss: forgetting
    return {**probe.record, "measurable": True, **scores}


def record(found: dict | None, result, tracker) -> None:
    """The scores into result.metrics (retention.*), the provenance into result.json `retention` and
    MLflow tags."""
    if found is None:
        return
    result.retention = found
    scores = {f"retention.{k}": v for k, v in found.items() if k in SCORES}
    result.metrics.update(scores)  # MLflow metrics with the others (run._log_outcome)
    tracker.set_tags({f"retention.{k}": str(v) for k, v in found.items() if k not in SCORES})


def _probe(cfg: DictConfig, tokenizer, seq2seq: bool) -> Probe:
    """The held-out files of the corpus in path order, one window per file (its first
    model.max_length tokens: many files rather than one long one), until retention_max_tokens."""
    from hydra.utils import instantiate

    from harness.tokenizer import task_yaml
    from tasks.schema import DataError

    trainer, value = cfg.trainer, cfg.trainer.retention
    corpus = instantiate({**task_yaml("code_corpus"), "name": "retention", "data_dir": None,  # its machinery, its split
                          "root": None if value == STDLIB else str(Path(value).expanduser().resolve()),
                          "include": list(trainer.retention_stdlib if value == STDLIB else trainer.retention_include),
                          "exclude": list(trainer.retention_exclude)}, _convert_="all")
    plan = corpus.data_plan()
    rows = corpus.load_data(plan).splits["test"]
    budget, width = int(trainer.retention_max_tokens), min(int(cfg.model.max_length), int(trainer.retention_max_tokens))
    windows, files, digest = [], [], hashlib.sha256()
    for row in sorted(rows, key=lambda r: r["path"]):
        left = budget - sum(map(len, windows))
        if left < 2:
            break
        window = _ids(tokenizer, row["text"])[: min(width, left)]
        if len(window) >= 2:
            windows.append(window)
            files.append(row["path"])
            digest.update(row["path"].encode() + b"\0" + row["text"].encode() + b"\0")
    if not windows:
        raise DataError(f"trainer.retention={value}: none of its {len(rows)} held-out files has 2 tokens to score")
    record = {"corpus": value, "root": str(plan.origins["files"].path.resolve()), "files": len(files),
              "held_out_files": len(rows), "tokens": sum(map(len, windows)), "windows": len(windows),
              "window": width, "digest": digest.hexdigest()[:16], "python": platform.python_version(),
              "scored_as": "second half of each window from its first half" if seq2seq else "next token"}
    return Probe(windows, record, seq2seq)


def _ids(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # long files: cut later
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids + \
        ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


@torch.no_grad()
def score(model, probe: Probe, pad_id: int, batch_size: int, device: Device) -> dict[str, float]:
    """Mean token loss and token accuracy over the probe's windows, in eval mode; the model's mode
    and the CPU random generator are restored (the training that follows is the same as without it)."""
    was_training, total_loss, hits, count = model.training, 0.0, 0, 0
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            for start in range(0, len(probe.windows), batch_size):
                loss, right, n = _batch(model, probe.windows[start:start + batch_size], pad_id, probe.seq2seq, device)
                total_loss, hits, count = total_loss + loss, hits + right, count + n
    finally:
        model.train(was_training)
    return {"loss": total_loss / count, "token_accuracy": hits / count}


def _batch(model, windows: list[list[int]], pad_id: int, seq2seq: bool, device: Device) -> tuple[float, int, int]:
    """(summed loss, argmax hits, predicted tokens) of one batch."""
    from harness.predict import pad

    if seq2seq:
        halves = [(w[: len(w) // 2], w[len(w) // 2:]) for w in windows]
        ids, mask = pad([s for s, _ in halves], pad_id)
        labels, label_mask = pad([t for _, t in halves], pad_id)
        labels = labels.masked_fill(label_mask == 0, -100)
        kwargs = {"labels": labels.to(device.type)}
        targets = labels
    else:
        ids, mask = pad(windows, pad_id)
        kwargs, targets = {}, ids.masked_fill(mask == 0, -100)[:, 1:]
    with torch.autocast(device.type, dtype=device.dtype, enabled=device.autocast):
        logits = model(input_ids=ids.to(device.type), attention_mask=mask.to(device.type), **kwargs).logits
    logits = logits[:, -targets.shape[1] - (0 if seq2seq else 1):].float()  # prompt methods prepend virtual tokens
    logits = logits if seq2seq else logits[:, :-1]
    targets = targets.to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    kept = targets != -100
    return float(loss), int(((logits.argmax(-1) == targets) & kept).sum()), int(kept.sum())
