"""One base, many adapters: `python -m harness.evaluate --adapters RUN [RUN ...] [--merge]`.

Each RUN is a cell's output directory (result.json, config.json, adapter/) or the MLflow run id of a
cell, whose result.json, config.yaml and adapter/ artifacts are downloaded. The cells must share a
base: the same model config, quantization and preparation step, task head and head arguments,
device and precision. The first cell sets the base and any cell that differs is refused by name.

The base loads once. Each adapter is loaded into it through PEFT: PeftModel.from_pretrained for the
first, load_adapter + set_adapter for the next ones of the same PEFT type; an adapter of another type
(LoRA after IA3, say) follows unload(), which takes the PEFT layers out and leaves the base weights
where they are. Each adapter is then scored exactly as its cell was: the cell's test rows
(trainer.max_eval_examples), features, eval batch size and seed, through task.predict, task.score
and task.write_predictions. `--merge` scores it merged into the base as well (merge_adapter, then
unmerge_adapter, the base weights put back bit for bit from a copy) and reports the score and
predict-time differences, merged minus unmerged, measured on the same rows.

stdout holds one JSON line per adapter (progress goes to stderr); the metrics are logged to the
adapter's own MLflow run as `evaluate.<metric>` and `evaluate.merged.<metric>`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Iterator

import torch

from harness.adapter_cells import Cell, EvaluateError, check, check_shared_base, resolve
from harness.config import to_container


def evaluate(cells: list[Cell], merge: bool, out: Path) -> Iterator[dict]:
    """Load the shared base once, then score each cell's adapter on it; one record per adapter."""
    from hydra.utils import instantiate

    from harness.env import pick_device
    from harness.models import load_base, with_hub_mirror

    tasks = [instantiate(c.cfg.task, _convert_="all") for c in cells]
    for cell in cells:
        check(cell)
    check_shared_base(cells, tasks)
    local, _ = with_hub_mirror(cells[0].cfg)
    device = pick_device(local.device, local.precision)
    started = time.perf_counter()
    base, tokenizer = load_base(local.model, local.method, tasks[0].head(local.model.family), device,
                                tasks[0].model_kwargs())
    if local.method.get("prepare") is not None:  # as the cell prepared it (a k-bit base's layer dtypes)
        base = instantiate(local.method.prepare)(base)
    print(f"[evaluate] base {local.model.name} loaded once in {time.perf_counter() - started:.1f} s "
          f"for {len(cells)} adapter(s) on {device.name}", file=sys.stderr, flush=True)
    model, test_sets = None, {}
    for i, (cell, task) in enumerate(zip(cells, tasks)):
        model, base = _switch(model, base, cell.directory / "adapter", f"adapter{i}")
        rows, features = _test_set(cell, task, tokenizer, test_sets)
        yield _evaluate_one(cell, task, model, tokenizer, device, rows, features, merge,
                            out / f"{i}_{cell.name.replace('/', '_')}")


def _switch(model, base, adapter_dir: Path, name: str):
    """The PEFT model with the adapter in adapter_dir loaded and active, and the bare base. Another
    adapter of the same PEFT type joins the loaded ones; one of another type follows unload()."""
    import peft

    config = peft.PeftConfig.from_pretrained(str(adapter_dir))
    if model is not None and config.peft_type == model.peft_type:
        model.load_adapter(str(adapter_dir), adapter_name=name)
        model.set_adapter(name)
        return model.eval(), base
    if model is not None:
        base = model.unload()  # the PEFT layers out, the base weights untouched (no merge)
    return peft.PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=name).eval(), base


def _test_set(cell: Cell, task, tokenizer, cache: dict):
    """The cell's test rows and features, as harness.run built them; a data digest other than the
    cell's (the data changed since it ran) is refused."""
    from harness.features import build_features

    cfg = cell.cfg
    max_length = min(task.max_source_length, cfg.model.max_length)
    key = json.dumps([to_container(cfg.task), cfg.trainer.max_eval_examples, cfg.get("hub_mirror"), max_length],
                     sort_keys=True, default=str)
    if key not in cache:
        plan = task.data_plan(cfg.get("hub_mirror"))
        data = task.load_data(plan, tokenizer=tokenizer)
        test = data.splits["test"]
        n = cfg.trainer.max_eval_examples
        rows = test if n is None or n >= len(test) else test.select(range(n))
        features = build_features(task, rows, plan.identity, tokenizer, cfg.model.family, max_length,
                                  for_training=False, label="test")
        cache[key] = (data.digest, rows, features)
    digest, rows, features = cache[key]
    if cell.result.get("data_digest") not in (None, digest):
        raise EvaluateError(f"{cell.run} ({cell.name}): the task's data has digest {digest}, the cell ran on "
                            f"{cell.result['data_digest']}; its scores cannot be reproduced on other rows")
    return rows, features


def _predict(cell: Cell, task, model, tokenizer, device, rows, features, out: Path) -> dict:
    import transformers

    from harness.predict import metered

    transformers.set_seed(cell.cfg.seed)
    with metered() as meter:
        predictions = task.predict(model, tokenizer, features, task.collator(tokenizer, cell.cfg.model.family),
                                   cell.cfg.trainer, device)
    files = task.write_predictions(rows, predictions, out / "predictions")
    return {"metrics": task.score(rows, predictions), "predict_seconds": meter["seconds"],
            "files": {k: str(v) for k, v in files.items()}}


def _evaluate_one(cell: Cell, task, model, tokenizer, device, rows, features, merge: bool, out: Path) -> dict:
    scored = _predict(cell, task, model, tokenizer, device, rows, features, out)
    record = {"run": cell.run, "mlflow_run_id": cell.run_id, "task": cell.cfg.task.name,
              "model": cell.cfg.model.name, "method": cell.cfg.method.name, "seed": cell.cfg.seed,
              "adapter": str(cell.directory / "adapter"), "rows": len(rows), **scored,
              "cell_metrics": cell.result.get("metrics")}
    logged = {f"evaluate.{k}": v for k, v in scored["metrics"].items()}
    logged["evaluate.predict_seconds"] = scored["predict_seconds"]
    if merge:
        merged = _merged(cell, task, model, tokenizer, device, rows, features, out / "merged")
        difference = {"metrics": {k: v - scored["metrics"][k] for k, v in merged["metrics"].items()},
                      "predict_seconds": merged["predict_seconds"] - scored["predict_seconds"]}
        record.update(merged=merged, merged_minus_unmerged=difference,
                      quantized_base=cell.cfg.method.get("quantization") is not None)
        logged.update({f"evaluate.merged.{k}": v for k, v in merged["metrics"].items()})
        logged["evaluate.merged.predict_seconds"] = merged["predict_seconds"]
        logged.update({f"evaluate.merged_minus_unmerged.{k}": v for k, v in difference["metrics"].items()})
        logged["evaluate.merged_minus_unmerged.predict_seconds"] = difference["predict_seconds"]
    record["logged_to"] = _log(cell, logged)
    return record


def _merged(cell: Cell, task, model, tokenizer, device, rows, features, out: Path) -> dict:
    """The active adapter merged into the base weights (PEFT merge_adapter), scored on the same rows."""
    if not hasattr(model.base_model, "merge_adapter"):
        raise EvaluateError(f"{cell.run} ({cell.name}): a {model.peft_type} adapter has no weights to merge "
                            "into the base; run without --merge")
    with merged_into_base(model):
        return _predict(cell, task, model, tokenizer, device, rows, features, out)


@contextlib.contextmanager
def merged_into_base(model) -> Iterator[None]:
    """merge_adapter() for the block, then unmerge_adapter() with the base weights put back bit for
    bit from a copy: unmerging subtracts what merging added, which rounds in fp32 and, on a 4-bit
    base, quantizes W + BA and then W again (PEFT warns), so the next adapters would otherwise be
    scored on another base. The copy costs the memory of the adapted layers' base weights."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    saved = []
    for layer in model.modules():
        if isinstance(layer, BaseTunerLayer):
            base = layer.get_base_layer()
            for name in ("weight", "bias"):
                param = getattr(base, name, None)
                if isinstance(param, torch.nn.Parameter):
                    saved.append((base, name, param, param.data.clone()))
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
        for base, name, param, data in saved:  # a 4-bit merge replaces the Parameter: the original goes back
            param.data = data
            setattr(base, name, param)


def _log(cell: Cell, metrics: dict[str, float]) -> str | None:
    """The metrics, into the adapter's own MLflow run; the store's URI (None: the cell has no run)."""
    if not cell.run_id or not cell.tracking_uri:
        print(f"[evaluate] {cell.run}: the cell has no MLflow run (tracker=none); scores printed only",
              file=sys.stderr, flush=True)
        return None
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from harness.tracking import absolute_uri

    now = int(time.time() * 1000)
    MlflowClient(absolute_uri(cell.tracking_uri)).log_batch(
        cell.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    return cell.tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", nargs="+", required=True, metavar="RUN",
                        help="cells' output directories or MLflow run ids, sharing one base model")
    parser.add_argument("--merge", action="store_true", help="score each adapter merged into the base too")
    parser.add_argument("--tracking-uri", help="the MLflow store of the runs (default: MLFLOW_TRACKING_URI, "
                        "else the cell's tracker.uri, else sqlite:///runs/mlflow.db)")
    parser.add_argument("--out", type=Path, help="where prediction files go (default: runs/evaluate/<time>)")
    args = parser.parse_args(argv)
    from harness.__main__ import quiet

    quiet()
    out = (args.out or Path("runs/evaluate") / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the harness's own progress lines; stdout is JSON
            cells = [resolve(run, args.tracking_uri, out / "downloads") for run in args.adapters]
            for record in evaluate(cells, args.merge, out):
                print(json.dumps(record, default=str), file=stdout, flush=True)
    except EvaluateError as err:
        print(f"[evaluate] {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
