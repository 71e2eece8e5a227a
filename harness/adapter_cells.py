"""The RUNs of harness.evaluate: a cell's output directory or MLflow run id as a Cell (a run id's
result.json, config.yaml and adapter/ artifacts downloaded), and the checks that refuse, by name, a
cell whose adapter cannot be scored on the shared base.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config import flatten

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_URI = "sqlite:///runs/mlflow.db"
# PEFT initialisations that rewrite the base weights (the base keeps a residual): such an adapter
# does not apply to the original base, which is what the cells here share.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


class EvaluateError(Exception):
    """A RUN that cannot be evaluated here: the message says which one, and why."""


@dataclass
class Cell:
    run: str               # as given on the command line
    directory: Path        # holds result.json and adapter/ (downloaded for a run id)
    cfg: DictConfig        # the cell's resolved config
    result: dict           # its result.json
    run_id: str | None     # its MLflow run (None for tracker=none)
    tracking_uri: str | None

    @property
    def name(self) -> str:
        return f"{self.cfg.task.name}/{self.cfg.model.name}/{self.cfg.method.name}/seed{self.cfg.seed}"


def resolve(run: str, tracking_uri: str | None, downloads: Path) -> Cell:
    """A RUN as a Cell: a directory is read in place, a run id is downloaded from its store."""
    path = Path(run)
    if path.is_dir():
        result = _read_json(path / "result.json", run)
        cfg = OmegaConf.create(_read_json(path / "config.json", run))
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracker.get("uri")
        return Cell(run, path, cfg, result, result.get("mlflow_run_id"), uri)
    if not RUN_ID.match(run):
        raise EvaluateError(f"{run}: neither a cell's output directory nor an MLflow run id (32 hex digits)")
    from harness.tracking import absolute_uri

    uri = absolute_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)
    directory = _download(run, uri, downloads / run)
    cfg = OmegaConf.load(directory / "config.yaml")
    return Cell(run, directory, cfg, _read_json(directory / "result.json", run), run, uri)


def _read_json(path: Path, run: str) -> dict:
    if not path.is_file():
        raise EvaluateError(f"{run}: no {path.name} in {path.parent} (a cell's output directory holds one)")
    return json.loads(path.read_text())


def _download(run_id: str, uri: str, target: Path) -> Path:
    """The cell's result.json, config.yaml and adapter/ artifacts, into target."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    try:
        client.get_run(run_id)
    except MlflowException as err:
        raise EvaluateError(f"{run_id}: no such MLflow run in {uri} ({err.error_code}); "
                            "pass --tracking-uri or the cell's output directory") from err
    held = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "adapter")}
    for name in ("result.json", "config.yaml", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        if name not in held:
            raise EvaluateError(f"MLflow run {run_id} holds no artifact {name} (cells log adapter weights since "
                                "harness.evaluate was added; a non-PEFT method has none); pass the cell's output "
                                "directory instead")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("result.json", "config.yaml", "adapter"):
        download_artifacts(run_id=run_id, artifact_path=name, dst_path=str(target), tracking_uri=uri)
    return target


def check(cell: Cell) -> None:
    """Refuse, with the reason, a cell whose adapter cannot be put on a shared base."""
    if cell.result.get("status") != "FINISHED":
        raise EvaluateError(f"{cell.run} ({cell.name}): the cell is {cell.result.get('status')} "
                            f"({cell.result.get('reason')}); only a FINISHED cell's adapter is evaluated")
    method = cell.cfg.method
    if method.get("peft") is None:
        what = (f"attaches through {method.attach._target_} (not PEFT), so it cannot be switched on a shared "
                "base" if method.get("attach") is not None else
                "fine-tunes every weight: adapter/ holds a whole model, not an adapter over the base")
        raise EvaluateError(f"{cell.run} ({cell.name}): method {method.name} {what}; "
                            "harness.evaluate takes PEFT adapters only")
    adapter = cell.directory / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (adapter / name).is_file():
            raise EvaluateError(f"{cell.run} ({cell.name}): no adapter, {adapter / name} is missing")
    init = json.loads((adapter / "adapter_config.json").read_text()).get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
        raise EvaluateError(f"{cell.run} ({cell.name}): its adapter starts from init_lora_weights={init}, which "
                            "rewrites the base weights, so it does not apply to the shared base (PEFT converts "
                            "such an adapter: save_pretrained(path_initial_model_for_weight_conversion=...))")


def base_of(cfg: DictConfig, task) -> dict:
    """What the base model of a cell is made of: cells with equal ones share a loaded base."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return {"model": plain["model"], "quantization": plain["method"].get("quantization"),
            "prepare": plain["method"].get("prepare"), "base_dtype": plain["method"].get("base_dtype"),
            "head": task.head(cfg.model.family), "head_kwargs": task.model_kwargs(), "device": cfg.device,
            "precision": cfg.precision, "hub_mirror": cfg.get("hub_mirror")}


def check_shared_base(cells: list[Cell], tasks: list) -> None:
    first = flatten(base_of(cells[0].cfg, tasks[0]))
    for cell, task in zip(cells[1:], tasks[1:]):
        other = flatten(base_of(cell.cfg, task))
        differ = [f"{k}: {other.get(k)!r} here, {first.get(k)!r} there" for k in sorted(set(first) | set(other))
                  if first.get(k) != other.get(k)]
        if differ:
            raise EvaluateError(f"{cell.run} ({cell.name}) does not share the base of {cells[0].run} "
                                f"({cells[0].name}): {'; '.join(differ[:4])}; evaluate it in its own call")
    import peft

    configs = {c.run: peft.PeftConfig.from_pretrained(str(c.directory / "adapter")) for c in cells}
    prompt = sorted({str(c.peft_type) for c in configs.values() if c.is_prompt_learning})
    if prompt and len({str(c.peft_type) for c in configs.values()}) > 1:
        raise EvaluateError(f"prompt-learning adapters ({', '.join(prompt)}) share a base only with adapters "
                            "of their own type (PEFT cannot unload them); evaluate them in their own call")
