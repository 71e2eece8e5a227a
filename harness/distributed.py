"""One cell over several processes, through accelerate: who this process is, the Accelerator that
prepares the model and optimizer, each process's share of a batch, and gathering results in order.

Launchers are torch's and accelerate's own (`torchrun --nproc_per_node N -m harness ...`,
`accelerate launch -m harness ...`), or SLURM through submitit, whose environment is exported the
way torch expects. Every process runs the same cell; only the main one talks to MLflow and writes
result.json (harness.run). `trainer.batch_size` is the global batch: each global batch is split into
one contiguous share per process (accelerate's split_between_processes), each share's loss weighted
by its size, so the gradient DDP averages equals the one-process gradient of the whole batch.
"""
from __future__ import annotations

import contextlib
import os
from functools import lru_cache

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

MIXED_PRECISION = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}


def launched_processes() -> int:
    """How many processes the launcher started for this cell (1 without a launcher)."""
    _export_slurm()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _export_slurm() -> None:
    """Inside a SLURM job with several tasks (hydra/launcher=slurm, tasks_per_node=N), submitit
    exports RANK, WORLD_SIZE, MASTER_ADDR, ... from SLURM's variables, as torch expects them."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export()


@lru_cache(maxsize=1)
def state():
    """accelerate's PartialState: starts the process group (nccl on GPUs, gloo on the CPU) once."""
    from accelerate import PartialState

    shared = PartialState(cpu=not torch.cuda.is_available())  # gloo on the CPU (accelerate asks to be told)
    if shared.num_processes > 1:
        print(f"[harness] process {shared.process_index} of {shared.num_processes} "
              f"({shared.backend} on {shared.device})", flush=True)
    return shared


def world() -> int:
    return state().num_processes if launched_processes() > 1 else 1


def rank() -> int:
    return state().process_index if launched_processes() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def check(cfg: DictConfig) -> str | None:
    """Why this launch cannot run the cell (None: it can)."""
    processes = launched_processes()
    if processes > 1 and cfg.distributed.name == "none":
        return (f"launched with {processes} processes but distributed=none: each would train the whole "
                "cell; set distributed=ddp, fsdp, deepspeed_zero2 or deepspeed_zero3")
    batch = cfg.trainer.batch_size
    if isinstance(batch, int) and 0 < batch < processes:  # a bad batch size is validate.py's own error
        return (f"trainer.batch_size={cfg.trainer.batch_size} is the global batch and {processes} processes "
                "cannot each take a share of it; raise trainer.batch_size")
    if "deepspeed_plugin" in cfg.distributed.accelerator and not _has("deepspeed"):
        return f"distributed={cfg.distributed.name} needs DeepSpeed: pip install deepspeed (GPU hosts)"
    return None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def accelerator(device, grad_accum: int = 1, settings: DictConfig | dict | None = None):
    """The Accelerator of a cell: its distributed plugin (`distributed.accelerator`: none by
    default), the cell's precision and accumulation. Gradient clipping and accumulation go through
    it (harness.train)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    AcceleratorState._reset_state()  # a grid runs many cells in one process, each with its own settings
    plugins = instantiate(settings, _convert_="all") if settings else {}
    acc = Accelerator(cpu=device.type == "cpu", mixed_precision=MIXED_PRECISION[device.dtype],
                      gradient_accumulation_steps=grad_accum, **plugins)
    if "fsdp_plugin" in plugins and acc.distributed_type != DistributedType.FSDP and acc.num_processes > 1:
        # accelerate 1.15 turns FSDP on for accelerator devices only; torch's FSDP2 runs on the CPU
        # with gloo, so the CPU gets the same sharding instead of a silent fall-back to data parallel.
        acc.state.distributed_type, acc.state.fsdp_plugin = DistributedType.FSDP, plugins["fsdp_plugin"]
    return acc


def share(indices: list[int]) -> tuple[list[int], float]:
    """This process's contiguous share of a global batch, and the weight of its mean loss (its
    share of the batch times the number of processes: DDP's average of the weighted losses' gradients
    is then the gradient of the whole batch's mean). A process left without rows (a last batch
    smaller than the world) reruns the batch's first row with weight 0, so that every process
    takes part in each gradient exchange."""
    n = world()
    if n == 1:
        return indices, 1.0
    with state().split_between_processes(indices) as mine:
        mine = list(mine)
    if not mine:
        return indices[:1], 0.0
    return mine, len(mine) * n / len(indices)


def reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum over the processes (the logged loss of a global batch from its shares)."""
    if world() == 1 or not values:
        return values
    from accelerate.utils import reduce

    return reduce(torch.tensor(values, dtype=torch.float64, device=state().device), "sum").tolist()


def my_batches(batches: list[list[int]], sharded_params: bool) -> list[list[int]]:
    """This process's prediction batches, round robin. With sharded parameters (FSDP, ZeRO-3)
    every forward pass is a collective, so each process gets the same count: one short of it
    repeats its first batch (the repeat's results overwrite the same rows with the same values)."""
    n, r = world(), rank()
    if n == 1:
        return batches
    mine = batches[r::n]
    if sharded_params:
        most = -(-len(batches) // n)
        mine += [(mine or batches or [[]])[0]] * (most - len(mine))
    return [b for b in mine if b]


def gathered(out: dict) -> dict:
    """Every process's {position: result}, merged (positions are global, so order is preserved)."""
    if world() == 1:
        return out
    merged: dict = {}
    for part in gather_objects(out):
        merged.update(part)
    return merged


def gather_objects(value) -> list:
    """Every process's value, in process order."""
    if world() == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def from_main(value):
    """The main process's value, on every process (its decision to run or skip a cell, say)."""
    if world() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def params_sharded(model: torch.nn.Module) -> bool:
    """Whether the model's parameters are split over the processes (FSDP's DTensors, ZeRO-3)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters())


def gather_for_generate(model: torch.nn.Module) -> None:
    """FSDP2 gathers a sharded model's weights around its forward(); generate() calls the inner model
    itself, so it is registered as a forward method too (torch's register_fsdp_forward_method)."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    if isinstance(model, FSDPModule) and hasattr(model, "generate"):
        register_fsdp_forward_method(model, "generate")


def save_model(model: torch.nn.Module, directory) -> None:
    """save_pretrained by the main process; with sharded weights every process gathers them first."""
    state = None
    if params_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if is_main():
        model.save_pretrained(directory, **({"state_dict": state} if state is not None else {}))


def no_sync(acc, model, sync: bool):
    """No gradient exchange on a micro-batch that does not end an optimizer step."""
    if sync or acc.num_processes == 1:
        return contextlib.nullcontext()
    return acc.no_sync(model)


class Forward:
    """What a loss function is given: calls go through the prepared model (DDP's forward starts its
    gradient exchange, FSDP's gathers the weights), attributes come from the model itself (config,
    heads). A loss that runs a sub-model on its own (the encoder of an encoder-decoder) would train
    each process apart, so under several processes it is an error, not a silent divergence."""

    def __init__(self, wrapped: torch.nn.Module, model: torch.nn.Module):
        self._wrapped, self._model = wrapped, model

    def __call__(self, *args, **kwargs):
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "get_encoder" and world() > 1:
            raise NotImplementedError("this task's loss runs the encoder of an encoder-decoder model outside "
                                      "the prepared model, so its gradients would not be exchanged between "
                                      "processes; train it with distributed=none or use a decoder/encoder model")
        return getattr(self._model, name)
