"""The same tuning budget for every method (`+hparams_search=equal_budget`): a Hydra sweeper.

Hydra's own Optuna sweeper (hydra-optuna-sweeper 1.2.0 and 1.3.0) requires optuna<3, whose RDB
storage does not run on the SQLAlchemy 2.1 this project pins; so this sweeper drives optuna 4
directly and launches every trial through Hydra's launcher (basic, joblib, submitit), as cells.

For each combination of the plain swept values (task, model, method, ...) it runs its own study of
`hydra.sweeper.n_trials` trials (or until the trials have trained `hparams_search.budget_seconds`)
over that method's `search:` space, every trial a cell scored on the validation split
(`trainer.score_split=validation`). A FAILED cell is told to Optuna as FAIL, a cell that did not
run (SKIPPED: unsupported, or running elsewhere) as PRUNED; Optuna's own pruners are not used: a
trial is a whole cell, with no intermediate validation scores to prune on. The best trial's params
are then retrained on `hparams_search.final_seeds` and scored on test, as ordinary cells, their
result.json and MLflow run carrying the search summary (`search`) the leaderboard reports.
The study lives in `hparams_search.storage` under a name derived from the search's identity, so a
search launched again continues: finished trials are kept, only the missing ones run.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harness.files import atomic

STATES = {"FINISHED": optuna.trial.TrialState.COMPLETE, "FAILED": optuna.trial.TrialState.FAIL,
          "SKIPPED": optuna.trial.TrialState.PRUNED}


class SearchError(Exception):
    """A search that cannot run as configured (one line: what, where, what was expected)."""


class Search:
    """The sweeper's work (hydra_plugins/harness_search holds the plugin class Hydra requires)."""

    def __init__(self, n_trials: int, max_batch_size: int | None = None) -> None:
        if not isinstance(n_trials, int) or n_trials < 1:
            raise SearchError(f"hydra.sweeper.n_trials={n_trials!r}: must be an integer >= 1")
        self.n_trials, self.max_batch_size = n_trials, max_batch_size
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list[Any]:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        overrides = OverridesParser.create().parse_overrides(arguments)
        combos = BasicSweeper.split_arguments(overrides, None)[0]  # the plain sweep: one study each
        try:
            studies = [(combo, self._study(combo)) for combo in combos]  # every refusal before any cell runs
        except SearchError as err:
            print(f"hparams_search: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        returns: list[Any] = []
        for combo, (study, space, cfg) in studies:
            returns += self._trials(study, combo, space, cfg)
            returns += self._finals(study, combo, space, cfg)
        return returns

    def _study(self, combo: list[str]) -> tuple[optuna.Study, dict, DictConfig]:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(combo))
        where = f"{cfg.task.name} x {cfg.model.name} x {cfg.method.name}"
        _need_validation(cfg, where)
        space = search_space(cfg, where)
        hs = cfg.hparams_search
        name = study_name(cfg, combo, space)
        storage = hs.storage
        if storage.startswith("sqlite:///"):
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=hs.direction,
                                    sampler=optuna.samplers.TPESampler(seed=hs.sampler_seed))
        return study, space, cfg

    def _trials(self, study: optuna.Study, combo: list[str], space: dict, cfg: DictConfig) -> list[Any]:
        """Ask, launch (a batch at a time), tell, until n_trials have finished or the budget is spent."""
        returns: list[Any] = []
        budget = cfg.hparams_search.budget_seconds
        while (left := self.n_trials - len(_finished(study))) > 0 and not (budget and train_seconds(study) >= budget):
            asked = {name: dist for name, (_, dist) in space.items()}
            batch = [study.ask(asked) for _ in range(1 if budget else min(left, self.max_batch_size or left))]
            jobs = [_with(combo, {**_overrides(space, t.params), "trainer.score_split": "validation"}) for t in batch]
            done = self._launch(jobs)
            for trial, ret in zip(batch, done):
                result = _result(ret)
                state = STATES.get(result.get("status"), optuna.trial.TrialState.FAIL)
                for key, value in {"cell_dir": result.get("_dir"), "mlflow_run_id": result.get("mlflow_run_id"),
                                   "reason": result.get("reason"), "train_seconds": _train_seconds(result)}.items():
                    trial.set_user_attr(key, value)
                value = result.get("primary_value") if state == optuna.trial.TrialState.COMPLETE else None
                study.tell(trial, value, state=state)
                annotate(result, ret, {"role": "trial", "study": study.study_name, "trial": trial.number,
                                       "params": trial.params, "state": state.name})
            returns += done
        return returns

    def _finals(self, study: optuna.Study, combo: list[str], space: dict, cfg: DictConfig) -> list[Any]:
        """The best trial's params on every final seed, scored on test; each cell gets the summary."""
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            print(f"[harness] search {study.study_name}: no trial finished, so no final cells", flush=True)
            return []
        best = study.best_trial
        jobs = [_with(combo, {**_overrides(space, best.params), "seed": seed})
                for seed in cfg.hparams_search.final_seeds]
        done = self._launch(jobs)
        block = {"role": "final", **summary(study)}
        for ret in done:
            annotate(_result(ret), ret, block)
        return done

    def _launch(self, jobs: list[list[str]]) -> Sequence[Any]:
        returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        self.job_idx += len(jobs)
        return returns


def search_space(cfg: DictConfig, where: str) -> dict[str, tuple[str, optuna.distributions.BaseDistribution]]:
    """name -> (the method key it sets, its distribution), from the method's `search:` block."""
    block = cfg.method.get("search")
    if not block:
        raise SearchError(f"method.search of {where}: empty; a search needs the method's `search:` block "
                          "(conf/method/base/default.yaml gives every method a learning-rate range)")
    space = {}
    for name, item in block.items():
        if not isinstance(item, DictConfig) or "key" not in item or "distribution" not in item:
            raise SearchError(f"method.search.{name} of {where}: must be {{key: <method key>, distribution: "
                              "{_target_: optuna.distributions.XDistribution, ...}}")
        if OmegaConf.select(cfg.method, item.key) is None:
            raise SearchError(f"method.search.{name}.key={item.key} of {where}: the method has no such key")
        space[name] = (item.key, instantiate(item.distribution, _convert_="all"))
    return space


def study_name(cfg: DictConfig, combo: list[str], space: dict) -> str:
    """The search's identity: task, model, method, the space and every other override (not N, so a
    larger n_trials continues the same study)."""
    fixed = sorted(o for o in combo if not o.lstrip("+~").startswith(("hydra.", "hparams_search", "seed=")))
    shape = {k: [key, optuna.distributions.distribution_to_json(d)] for k, (key, d) in sorted(space.items())}
    digest = hashlib.sha256(json.dumps([fixed, shape]).encode()).hexdigest()[:12]
    return f"{cfg.task.name}-{cfg.model.name}-{cfg.method.name}-{digest}"


def summary(study: optuna.Study) -> dict:
    """The search as the final cells and the leaderboard report it."""
    states = [t.state for t in study.trials]
    scores = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"study": study.study_name, "trials": len(_finished(study)),
            "complete": len(scores), "failed": states.count(optuna.trial.TrialState.FAIL),
            "pruned": states.count(optuna.trial.TrialState.PRUNED), "best_trial": study.best_trial.number,
            "best_params": study.best_trial.params, "validation_score": study.best_value,
            "search_seconds": trained_seconds(study),
            "spread": {"min": min(scores), "max": max(scores),
                       "std": statistics.pstdev(scores) if len(scores) > 1 else 0.0}}


def train_seconds(study: optuna.Study) -> float:
    """The budget's clock: the training time of the finished trials (each cell's cost.train_seconds;
    loading and scoring are left out, so a method is not charged for a slower evaluation)."""
    return sum(t.user_attrs.get("train_seconds") or 0.0 for t in _finished(study))


def trained_seconds(study: optuna.Study) -> float:
    """Wall time of the study's finished trials (each a whole cell: load, train, score)."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in _finished(study)
               if t.datetime_complete and t.datetime_start)


def annotate(result: dict, ret: Any, block: dict) -> None:
    """Add `search` to a cell's result.json (atomically) and as `search.*` tags on its MLflow run."""
    path = Path(result.get("_dir") or _out_dir(ret)) / "result.json"
    if not path.exists():
        return
    record = json.loads(path.read_text())
    record["search"] = block
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    uri, run_id = OmegaConf.select(ret.cfg, "tracker.uri"), record.get("mlflow_run_id")
    if uri and run_id:
        _annotate_run(uri, run_id, record, block)


def _annotate_run(uri: str, run_id: str, record: dict, block: dict) -> None:
    """The search on the cell's MLflow run. A SKIPPED cell names the FINISHED run it repeats: that
    run's own result.json gets the block (its record, never the skip's, which would hide it)."""
    import tempfile

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    tags = {f"search.{k}": json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in block.items()}
    for key, value in tags.items():
        client.set_tag(run_id, key, value[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        if record.get("status") != "FINISHED":
            record = json.loads(Path(client.download_artifacts(run_id, "result.json", tmp)).read_text())
            if record.get("status") != "FINISHED":
                return
            record["search"] = block
        path = Path(tmp) / "upload" / "result.json"
        path.parent.mkdir()
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        client.log_artifact(run_id, str(path))  # the leaderboard built from MLflow reads this copy


def _need_validation(cfg: DictConfig, where: str) -> None:
    """Trials are scored on validation, never on test: a task without one is refused."""
    plan = instantiate(cfg.task, _convert_="all").data_plan(cfg.get("hub_mirror"))
    if "validation" not in plan.specs:
        raise SearchError(f"task {cfg.task.name} ({where}): no validation split (it has "
                          f"{', '.join(plan.specs)}); a search scores its trials on validation, never on test")


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.is_finished()]


def _overrides(space: dict, params: dict) -> dict[str, Any]:
    return {f"method.{space[name][0]}": value for name, value in params.items()}


def _with(combo: list[str], values: dict[str, Any]) -> list[str]:
    """The combination's overrides with these keys set (replacing the same key's earlier value)."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in [f"{k}=" for k in values]}
    kept = [o for o in combo if o.split("=", 1)[0].lstrip("+~") not in keys]
    return kept + [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in values.items()]


def _out_dir(ret: Any) -> str:
    return str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else ""


def _result(ret: Any) -> dict:
    path = Path(_out_dir(ret)) / "result.json"
    if not path.exists():
        return {"status": "FAILED", "reason": f"no result.json in {path.parent}"}
    record = json.loads(path.read_text())
    record["_dir"] = str(path.parent)
    return record


def _train_seconds(result: dict) -> float | None:
    return (result.get("cost") or {}).get("train_seconds")
