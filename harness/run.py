"""One cell of the grid: task x model x method x seed -> Result (result.json + MLflow run).

The pipeline reads top to bottom; every variation comes from config (`_target_`), so there is no
branching on task, model or method names here. Launched on several processes (harness.distributed),
every process runs the cell; the main one alone decides whether it runs, talks to MLflow, scores and
writes its files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harness import cost, distributed, faults, outbox, provenance, retention
from harness.compat import method_unsupported
from harness.config import config_hash, flatten, to_container
from harness.redact import redact
from harness.env import Device, pick_device
from harness.features import build_features
from harness.models import load_model, load_tokenizer, with_hub_mirror
from harness.predict import metered
from harness.results import FAILED, FINISHED, SKIPPED, Result
from harness.tracking import NullTracker, Previous, Tracker
from harness.train import discard_checkpoint, train


def run(cfg: DictConfig, out_dir: Path, parent_run_id: str | None = None) -> Result:
    """Run one cell. A failing cell never raises: it is recorded as FAILED with its traceback."""
    out_dir, main = Path(out_dir), distributed.is_main()
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    tracker: Tracker = outbox.journaled(instantiate(cfg.tracker), out_dir) if main else NullTracker()
    result = Result(status=FAILED, task=cfg.task.name, model=cfg.model.name, method=cfg.method.name,
                    seed=cfg.seed, config_hash=config_hash(cfg))
    try:
        task = instantiate(cfg.task, _convert_="all")
        plan = task.data_plan(cfg.get("hub_mirror"))  # where the rows are (cheap: nothing is read yet)
        if main:
            print(f"[harness] data: {plan.why}", flush=True)
        local, weights = with_hub_mirror(cfg)         # the model's own copy, when a mirror holds it
        result.config_hash = config_hash(cfg, json.dumps([plan.identity, weights], default=str))
        previous = _claim(cfg, tracker, result) if main else Previous()  # before any model or data is loaded
        go, result.status, result.reason = distributed.from_main((previous is not None, result.status, result.reason))
        if not go:
            return result
        tags = {**provenance.tags(result.config_hash), **provenance.trust_tags(cfg.model),
                "cell": cell_name(cfg), "seed": str(cfg.seed), "processes": str(distributed.world())}
        tracker.start(run_name(cfg), tags, parent_run_id, resume_run_id=previous.interrupted)
        result.mlflow_run_id = tracker.run_id
        if main:
            _record_config(cfg, out_dir, tracker)
        _execute(local, task, plan, out_dir, tracker, result)
    except Exception as err:  # noqa: BLE001 -- any cell failure is recorded, never propagated
        if main:
            faults.fail(err, cfg, result, out_dir, tracker)  # diverged, out of memory, disk full: reasons to act on
        else:
            print(f"[harness] process {distributed.rank()}: {faults.reason(err, cfg, result)}", flush=True)
    finally:
        if main:
            result.tracking = outbox.state(tracker)
            faults.close(result, out_dir, tracker)  # result.json whole or absent; FINISHED only once all is written
            outbox.settle(tracker, result, out_dir)  # the journal ends the cell; result.json says if MLflow holds it
        _safe(tracker.release)  # the cell's lock, also when it was skipped once held
    return result


def _claim(cfg: DictConfig, tracker: Tracker, result: Result) -> Previous | None:
    """This cell's earlier runs once this process holds its lock (harness.liveness); None, with the
    result SKIPPED and its reason, when it is FINISHED already or running in another live process."""
    previous = tracker.previous(result.config_hash)
    if _skipped(cfg, previous, result):
        return None
    if busy := tracker.claim(result.config_hash):  # one process per cell, on any machine
        result.status, result.reason = SKIPPED, busy
        return None
    previous = tracker.previous(result.config_hash)  # re-read under the lock: it may have just finished
    return None if _skipped(cfg, previous, result) else previous


def _skipped(cfg: DictConfig, previous: Previous, result: Result) -> bool:
    if previous.finished and not cfg.rerun:
        result.status, result.mlflow_run_id = SKIPPED, previous.finished
        result.reason = f"already FINISHED as MLflow run {previous.finished}; rerun=true runs it again"
    elif previous.elsewhere:
        result.status, result.reason = SKIPPED, previous.elsewhere
    else:
        return False
    return True


def cell_name(cfg: DictConfig) -> str:
    """The cell without its seed: seed replicas share it (tag `cell`), so the UI can group them."""
    return f"{cfg.task.name}/{cfg.model.name}/{cfg.method.name}"


def run_name(cfg: DictConfig) -> str:
    return f"{cell_name(cfg)}/seed{cfg.seed}"


@dataclass
class _Cell:
    """What a cell trains and scores, once its data and model are loaded."""
    model: object
    tokenizer: object
    collate: object
    train_features: object
    test_rows: object
    test_features: object
    estimated_peak: int | None
    train_rows: object = None   # None where the train split is documents (no naive baseline then)


def _execute(cfg: DictConfig, task, plan, out_dir: Path, tracker: Tracker, result: Result) -> None:
    transformers.set_seed(cfg.seed)
    device = pick_device(cfg.device, cfg.precision)
    result.device = device.name
    with cost.PeakMemory(device.type) as peak:  # this cell's own peak, on the CPU as on a GPU
        cell = _prepare(cfg, task, plan, device, tracker, result)
        if cell is None:
            return
        result.cost["estimated_peak_memory_bytes"] = cell.estimated_peak  # an out-of-memory reason quotes it
        probe = retention.before(cfg, task, cell.model, cell.tokenizer, device)  # trainer.retention: forgetting

        def evaluate() -> tuple[list, dict]:
            with metered() as meter:
                return task.predict(cell.model, cell.tokenizer, cell.test_features, cell.collate,
                                    cfg.trainer, device), meter

        if cfg.trainer.eval_before_training:
            untrained = evaluate()[0]  # every process predicts its share
            if distributed.is_main():
                result.untrained_metrics = task.score(cell.test_rows, untrained)
                tracker.log_metrics({f"untrained.{k}": v for k, v in result.untrained_metrics.items()})
        checkpoints = Path(cfg.checkpoint_dir) / result.config_hash
        stats = train(cell.model, cell.train_features, cell.collate, cfg.trainer, instantiate(cfg.method.optimizer),
                      device, cfg.seed, log=tracker.log_metrics, loss_fn=task.loss,
                      step_hooks=tuple(instantiate(h) for h in cfg.method.get("step_hooks") or ()),
                      checkpoint_dir=checkpoints,
                      accelerator=distributed.accelerator(device, cfg.trainer.grad_accum, cfg.distributed.accelerator))
        predictions, meter = evaluate()
        retained = retention.after(probe, cell.model, cell.tokenizer, cfg.trainer, device)  # every process
        distributed.save_model(cell.model, out_dir / "adapter")  # every process: sharded weights are gathered
    if not distributed.is_main():
        result.status = FINISHED  # this process's part of the cell; the main process records the cell
        return
    result.metrics = task.score(cell.test_rows, predictions)
    result.primary_metric, result.primary_value = task.primary_metric, result.metrics[task.primary_metric]
    retention.record(retained, result, tracker)
    result.per_task = task.per_task(result.metrics)  # a multi-task cell: each member's scores
    result.confidence_intervals = task.confidence_intervals(cell.test_rows, predictions,
                                                            cfg.trainer.bootstrap_resamples, cfg.seed)
    _record_predictions(task, cell, predictions, result, tracker, out_dir)
    result.cost = _cost(cell.model, stats, meter, peak.bytes, out_dir / "adapter")
    result.cost["estimated_peak_memory_bytes"] = cell.estimated_peak
    result.status = FINISHED
    discard_checkpoint(checkpoints)
    _log_outcome(tracker, result, out_dir)


def _prepare(cfg: DictConfig, task, plan, device: Device, tracker: Tracker, result: Result) -> _Cell | None:
    """Data, compatibility (None and SKIPPED when the combination cannot run), model and features."""
    data = task.load_data(plan, tokenizer=load_tokenizer(cfg.model))  # a stream's budget counts its tokens
    result.data_digest, result.metric = data.digest, task.metric
    result.data = _data_record(data, cfg.trainer)
    _log_data(tracker, task, data, result.data)
    family = cfg.model.family
    reason = task.unsupported(family, data.documents) or method_unsupported(
        cfg.method, family, task.head(family), device, cfg.model.get("layer_type", "linear"))
    if reason:
        result.status, result.reason = SKIPPED, reason
        return None
    model, tokenizer = load_model(cfg.model, cfg.method, task.head(family), device, task.model_kwargs(),
                                  gradient_checkpointing=cfg.trainer.get("gradient_checkpointing", False))
    if cfg.trainer.get("compile"):
        model.compile()
    max_length = min(task.max_source_length, cfg.model.max_length)
    train_rows = _first(data.splits["train"], cfg.trainer.max_train_examples)
    split = cfg.trainer.get("score_split", "test")  # validation: a search's trials (harness/search.py)
    if split not in data.splits:
        raise ValueError(f"trainer.score_split={split}: task {task.name} has no {split} split "
                         f"(it has {', '.join(data.splits)})")
    result.data["score_split"] = split
    test_rows = _first(data.splits[split], cfg.trainer.max_eval_examples)
    train_features = build_features(task, train_rows, plan.identity, tokenizer, family, max_length,
                                    documents="train" in data.documents, label="train")
    test_features = build_features(task, test_rows, plan.identity, tokenizer, family, max_length,
                                   for_training=False, label=split)
    return _Cell(model, tokenizer, task.collator(tokenizer, family), train_features, test_rows, test_features,
                 _estimate(cfg), None if "train" in data.documents else data.splits["train"])


def _estimate(cfg: DictConfig) -> int | None:
    """The memory estimate of harness.estimate, recorded beside the measured peak."""
    from harness.estimate import estimate

    try:
        return estimate(cfg).peak_bytes
    except Exception as err:  # noqa: BLE001 -- an estimate that cannot be made must not stop the cell
        print(f"[harness] warning: no memory estimate for this cell ({type(err).__name__}: {err})", flush=True)
        return None


def _record_predictions(task, cell: _Cell, predictions: list, result: Result, tracker: Tracker,
                        out_dir: Path) -> None:
    """The official prediction files, the distribution of predicted classes, the naive baseline on
    the same test split, and the per-example results as an MLflow table."""
    import metrics

    files = task.write_predictions(cell.test_rows, predictions, out_dir / "predictions")
    result.files = {k: str(v) for k, v in files.items()}
    result.prediction_distribution = task.prediction_distribution(predictions)
    naive = task.naive_predictions(cell.train_rows, cell.test_rows) if cell.train_rows is not None else None
    if naive is not None:
        result.naive = task.naive
        result.naive_metrics = metrics.compute(task.metric, task.references(cell.test_rows), naive)
        tracker.log_metrics({f"naive.{k}": v for k, v in result.naive_metrics.items()})
    if result.prediction_distribution:
        tracker.log_metrics({f"predicted.{k}": v for k, v in result.prediction_distribution.items()})
    columns = task.example_columns(files)
    table = {"example": list(range(len(columns["reference"]))), **columns,
             "reference": [_short(r) for r in columns["reference"]],
             "prediction": [_short(p) for p in columns["prediction"]]}
    tracker.log_table(table, "per_example.json")


def _short(value, width: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _data_record(data, trainer: DictConfig) -> dict:
    """result.json `data`; cutting a split with trainer.max_*_examples makes it not comparable."""
    record = data.record()
    cuts = [f"trainer.{key}={trainer[key]} keeps {trainer[key]:,} of {record['splits'][split]:,} {split} rows"
            for key, split in (("max_train_examples", "train"), ("max_eval_examples", "test"))
            if trainer[key] is not None and trainer[key] < record["splits"].get(split, 0)]
    if cuts:
        reasons = ([record["why_not_comparable"]] if record["why_not_comparable"] else []) + cuts
        record.update(comparable=False, why_not_comparable="; ".join(reasons))
    return record


def _log_data(tracker: Tracker, task, data, record: dict) -> None:
    tracker.set_tags({"data_digest": data.digest, "data.source": ", ".join(record["source"]),
                      "data.revision": json.dumps(record["revision"]), "data.comparable": str(record["comparable"]),
                      "data.why_not_comparable": record["why_not_comparable"] or "",
                      **{f"data.splits.{s}": str(n) for s, n in record["splits"].items()}})
    for split, spec in data.plan.specs.items():
        where = str(data.plan.origins[spec["origin"]].path.resolve())
        tracker.log_dataset(f"{task.name}/{split}", where, f"{data.digest}-{split}", split)


def _log_outcome(tracker: Tracker, result: Result, out_dir: Path) -> None:
    """Scores with their CI bounds, the cost, and the files a user reopens: predictions, a PEFT
    adapter's config and weights (so that its run id is enough for harness.evaluate)."""
    tracker.log_metrics({**result.metrics, **result.cost,
                         **{f"{k}_ci_low": lo for k, (lo, _) in result.confidence_intervals.items()},
                         **{f"{k}_ci_high": hi for k, (_, hi) in result.confidence_intervals.items()}})
    tracker.log_artifact(out_dir / "predictions", "predictions")
    for name in ("adapter_config.json", "adapter_model.safetensors", "config.json"):
        if (out_dir / "adapter" / name).exists():
            tracker.log_artifact(out_dir / "adapter" / name, "adapter")


def _cost(model, stats, meter: dict, peak_bytes: int, adapter_dir: Path) -> dict[str, float]:
    return {**cost.parameter_counts(model),
            "base_weight_bytes": cost.base_weight_bytes(model),
            "peak_memory_bytes": peak_bytes,
            "train_seconds": stats.seconds, "train_steps": stats.steps,
            "resumed_from_step": stats.resumed_from_step,
            "train_tokens": stats.tokens, "tokens_per_second": stats.tokens_per_second,
            "padding_share": stats.padding_share,
            "predict_seconds": meter["seconds"], "predict_tokens": meter["tokens"],
            "predict_generated_tokens": meter["generated"],
            "predict_tokens_per_second": meter["tokens"] / meter["seconds"] if meter["seconds"] else 0.0,
            "adapter_bytes": cost.dir_bytes(adapter_dir)}


def _record_config(cfg: DictConfig, out_dir: Path, tracker: Tracker) -> None:
    resolved = redact(to_container(cfg))  # a secret a config value resolves to is never recorded
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    (out_dir / "config.json").write_text(json.dumps(resolved, indent=2, default=str))
    tracker.log_params(flatten(resolved))
    tracker.log_artifact(out_dir / "config.yaml")


def _first(rows, n: int | None):
    return rows if n is None or n >= len(rows) else rows.select(range(n))


def _safe(fn, *args) -> None:
    """Recording must not mask the cell's own error (a tracker down at the end, say)."""
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001
        print(f"[harness] warning: {getattr(fn, '__name__', fn)} failed: {err}")
