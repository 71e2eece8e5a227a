"""Bad config fails early: every value a cell depends on is checked before any model or data loads.

The schema is data: SCHEMA names each checked key and its rule (what the error message says is
allowed); a key a config does not have is not checked (tasks differ in their lengths). Every
`_target_` block of the method (PEFT and quantization configs, optimizer, attach, hooks) is checked
against the signature of the callable it names: a key that callable does not take is an error, never
silently dropped, and a value of the wrong simple type (int, float, bool, str) is one too.
Errors read `config error: KEY=VALUE: must be ...`, one line each.
"""
from __future__ import annotations

import difflib
import inspect
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from transformers import SchedulerType

from metrics.code_bleu import LANGS
from tasks.multitask import config_problems as multitask_problems

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


class ConfigError(ValueError):
    """One or more bad values; str() is one `config error: ...` line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"config error: {p}" for p in problems))


@dataclass(frozen=True)
class Rule:
    allowed: str                 # completes "must be ..."
    ok: Callable[[Any], bool]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def one_of(*choices: Any) -> Rule:
    return Rule(f"one of {', '.join(map(str, choices))}", lambda v: isinstance(v, (str, type(None))) and v in choices)


POSITIVE = Rule("a positive integer", lambda v: _int(v) and v > 0)
POSITIVE_OR_NULL = Rule("null or a positive integer", lambda v: v is None or POSITIVE.ok(v))
COUNT = Rule("an integer >= 0", lambda v: _int(v) and v >= 0)
FLAG = Rule("true or false", lambda v: isinstance(v, bool))
RATE = Rule("a finite number >= 0", lambda v: _number(v) and v >= 0)
POSITIVE_NUMBER = Rule("a finite number > 0", lambda v: _number(v) and v > 0)
FRACTION = Rule("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1)
WORKERS = Rule("auto or an integer >= 0", lambda v: v == "auto" or COUNT.ok(v))
RETENTION = Rule("null, stdlib or an existing directory of source files",  # harness/retention.py
                 lambda v: v is None or v == "stdlib" or (isinstance(v, str) and Path(v).expanduser().is_dir()))
GRAMMAR = Rule(f"null or one of {', '.join(LANGS)}", lambda v: v is None or v in LANGS)  # tree-sitter grammars


SCHEMA: dict[str, Rule] = {
    "seed": COUNT, "device": one_of("auto", "cpu", "cuda"), "precision": one_of("auto", "fp32", "bf16", "fp16"),
    "rerun": FLAG, "estimate.seq_len": POSITIVE_OR_NULL,
    "trainer.epochs": POSITIVE, "trainer.max_steps": POSITIVE_OR_NULL, "trainer.batch_size": POSITIVE,
    "trainer.grad_accum": POSITIVE, "trainer.eval_batch_size": POSITIVE,
    "trainer.scheduler": one_of(*(s.value for s in SchedulerType)),
    "trainer.warmup_ratio": FRACTION, "trainer.max_grad_norm": POSITIVE_NUMBER, "trainer.log_every": POSITIVE,
    "trainer.max_train_examples": POSITIVE_OR_NULL, "trainer.max_eval_examples": POSITIVE_OR_NULL,
    "trainer.eval_before_training": FLAG, "trainer.bootstrap_resamples": POSITIVE,
    "trainer.group_by_length": FLAG, "trainer.length_group_batches": POSITIVE,
    "trainer.gradient_checkpointing": FLAG, "trainer.compile": FLAG,
    "trainer.generation_cache": one_of("static", "dynamic"), "trainer.data_workers": WORKERS,
    "trainer.checkpoint_every": COUNT, "trainer.retention": RETENTION, "trainer.retention_max_tokens": POSITIVE,
    "trainer.score_split": one_of("test", "validation"),
    "model.max_length": POSITIVE, "model.trust_remote_code": FLAG,
    "task.max_source_length": POSITIVE, "task.max_target_length": POSITIVE, "task.query_max_length": POSITIVE,
    "task.syntax_language": GRAMMAR,
    "method.optimizer.lr": RATE, "method.optimizer.lr_ratio": POSITIVE_NUMBER, "method.optimizer.weight_decay": RATE,
}


def show(value: Any) -> str:
    """A value as it is written in an override: 'text', 0, nan, true, null, [a, b]."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def check(cfg: DictConfig) -> None:
    """Raise ConfigError naming every bad key, its value and what is allowed."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # a missing value (???) or an interpolation that cannot resolve
        raise ConfigError([f"{err.full_key}: {str(err.msg).splitlines()[0]}"]) from None
    problems = [f"{key}={show(value)}: must be {rule.allowed}" for key, value, rule in _values(cfg)
                if not rule.ok(value)]
    method = OmegaConf.to_container(cfg.method, resolve=True) if "method" in cfg else {}
    problems += [p for key, block in method.items() if key != "supports" for p in _blocks(block, f"method.{key}")]
    problems += _launch(cfg)
    problems += multitask_problems(cfg)
    if problems:
        raise ConfigError(problems)


def _launch(cfg: DictConfig) -> list[str]:
    """The distributed plugin's keys (checked against accelerate's classes), and whether this
    launch (its number of processes) can run the cell."""
    from harness.distributed import check as launch_check

    if "distributed" not in cfg:
        return []
    settings = OmegaConf.to_container(cfg.distributed.accelerator, resolve=True)
    problems = [p for key, block in settings.items() for p in _blocks(block, f"distributed.accelerator.{key}")]
    why = launch_check(cfg)
    return problems + ([f"distributed={cfg.distributed.name}: {why}"] if why else [])


_ABSENT = object()


def _values(cfg: DictConfig):
    """(key, value, rule) for every SCHEMA key the config has."""
    for key, rule in SCHEMA.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            yield key, value, rule


def _blocks(value: Any, where: str) -> list[str]:
    """Problems of every `_target_` block at or under `value`."""
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _blocks(v, f"{where}[{i}]")]
    if not isinstance(value, dict):
        return []
    if "_target_" not in value:
        return [p for k, v in value.items() for p in _blocks(v, f"{where}.{k}")]
    return target_problems(value, where)


def target_problems(block: dict, where: str) -> list[str]:
    """Keys of a `_target_` block that its callable does not take, and values of the wrong simple
    type; nested blocks (PEFT's loftq_config) are checked the same way."""
    from hydra._internal.utils import _locate  # what instantiate resolves `_target_` with (get_object logs)

    target = block["_target_"]
    try:
        fn = _locate(target)
    except Exception as err:  # noqa: BLE001 -- any import failure is the config's error
        return [f"{where}._target_={target!r}: cannot be imported ({' '.join(str(err).split())})"]
    params = _parameters(fn)
    hints = _hints(fn)
    problems = []
    for key, value in block.items():
        if key in HYDRA_KEYS:
            continue
        if params is not None and key not in params:
            near = difflib.get_close_matches(key, params, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            problems.append(f"{where}.{key}={show(value)}: not a parameter of {target}{hint}; "
                            f"allowed: {', '.join(sorted(params))}")
        elif isinstance(value, (dict, list)):
            problems += _blocks(value, f"{where}.{key}")
        elif (kind := _scalar(hints.get(key))) and not _fits(value, kind):
            problems.append(f"{where}.{key}={show(value)}: must be {kind.__name__}, as {target} types it")
    return problems


def _parameters(fn: Callable) -> set[str] | None:
    """Named parameters; **kwargs are not counted (BitsAndBytesConfig drops unknown ones with a log
    line only). None when the signature cannot be read."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _hints(fn: Callable) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn if not isinstance(fn, type) or hasattr(fn, "__dataclass_fields__")
                                     else fn.__init__)
    except Exception:  # noqa: BLE001 -- unresolvable annotations: no type check, the names still are
        return {}


def _scalar(hint: Any) -> type | None:
    """int, float, bool or str when that (or Optional of it) is the whole annotation, else None."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    return args[0] if len(args) == 1 and args[0] in (int, float, bool, str) else None


def _fits(value: Any, kind: type) -> bool:
    if value is None:
        return True
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return _int(value)
    return isinstance(value, kind)


def refused(cfg: DictConfig, message: str):
    """The FAILED record of a cell refused for its config: in a multirun the other cells still run,
    and the sweep counts this one."""
    from harness.config import config_hash
    from harness.results import FAILED, Result

    def get(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)

    try:
        digest = config_hash(cfg)
    except Exception:  # noqa: BLE001 -- a config that does not resolve has no hash
        digest = "unresolvable"
    return Result(status=FAILED, task=str(get("task.name")), model=str(get("model.name")),
                  method=str(get("method.name")), seed=get("seed"), config_hash=digest, reason=message)
