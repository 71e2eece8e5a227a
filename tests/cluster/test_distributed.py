"""One cell over two processes on the CPU (torchrun, gloo): the same global batch, the same loss curve
and the same predictions as one process, one MLflow run, and a resume after a kill; the DeepSpeed
presets composed into the accelerate plugins they build."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose, subprocess_env

pytestmark = pytest.mark.slow
# Example-mean losses (classification) and no dropout: two processes' shares then give exactly the
# one-process gradient, so the curves agree to float rounding.
CELL = ["model=tiny_llama", "trainer=smoke", "method.peft.lora_dropout=0", "trainer.batch_size=8",
        "trainer.max_steps=4", "tracker.uri=sqlite:///runs/mlflow.db"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "harness"]
# accelerate's own launcher (its multi-GPU launcher is torch's elastic one; on the CPU the processes use gloo).
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "harness"]


def _run(cwd: Path, *args: str, launcher: list[str] | None = None, timeout: int = 600) -> dict:
    cmd = (launcher or [sys.executable, "-m", "harness"]) + [*CELL, f"hydra.run.dir={cwd}/out", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((cwd / "out" / "result.json").read_text())


def _losses(cwd: Path, run_id: str) -> dict[int, float]:
    """The train_loss curve MLflow holds for the run, by step."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd}/runs/mlflow.db")
    return {m.step: m.value for m in client.get_metric_history(run_id, "train_loss")}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, dict]:
    cwd = tmp_path_factory.mktemp("single")
    return cwd, _run(cwd)


@pytest.mark.parametrize("backend,launcher", [("ddp", TORCHRUN), ("fsdp", TORCHRUN), ("ddp", ACCELERATE)],
                         ids=["torchrun-ddp", "torchrun-fsdp", "accelerate-ddp"])
def test_two_processes_train_and_predict_as_one(tmp_path, single, backend, launcher):
    one_dir, one = single
    two = _run(tmp_path, f"distributed={backend}", launcher=launcher)
    assert two["status"] == "FINISHED" and two["config_hash"] == one["config_hash"]  # the same cell
    assert two["cost"]["train_steps"] == one["cost"]["train_steps"] == 4
    assert two["cost"]["train_tokens"] == one["cost"]["train_tokens"]  # the same global batches, split in two
    assert _losses(tmp_path, two["mlflow_run_id"]) == pytest.approx(_losses(one_dir, one["mlflow_run_id"]), rel=1e-5)
    for name in ("predictions.txt", "answers.txt"):
        assert (tmp_path / "out/predictions" / name).read_text() == (one_dir / "out/predictions" / name).read_text()
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-9)

    from mlflow.tracking import MlflowClient

    runs = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db").search_runs(_experiments(tmp_path))
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"   # only the main process talks to MLflow
    assert runs[0].data.tags["processes"] == "2"
    assert (tmp_path / "out/adapter/adapter_model.safetensors").exists()


def _experiments(cwd: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    return [e.experiment_id for e in MlflowClient(f"sqlite:///{cwd}/runs/mlflow.db").search_experiments()]


def test_a_launch_with_distributed_none_is_refused(tmp_path):
    cmd = TORCHRUN + [*CELL, f"hydra.run.dir={tmp_path}/out"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "launched with 2 processes but distributed=none" in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize("backend", ["ddp", "fsdp"])
def test_a_killed_multiprocess_cell_resumes_from_its_checkpoint(tmp_path, backend):
    """SIGKILL the launcher and its processes after a checkpoint; the relaunch resumes from it and ends
    with the numbers of an uninterrupted two-process run."""
    long = ["trainer.max_steps=24", "trainer.checkpoint_every=2", f"distributed={backend}"]
    (tmp_path / "whole").mkdir()
    whole = _run(tmp_path / "whole", *long, launcher=TORCHRUN)
    cwd = tmp_path / "killed"
    cwd.mkdir()
    cmd = TORCHRUN + [*CELL, f"hydra.run.dir={cwd}/out", *long]
    proc = subprocess.Popen(cmd, cwd=cwd, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list((cwd / "runs/checkpoints").glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    import psutil

    for victim in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        victim.kill()  # the workers too: torchrun starts them in sessions of their own
    proc.wait()
    time.sleep(1)
    assert not (cwd / "out" / "result.json").exists(), "the cell finished before it was killed"
    resumed = _run(cwd, *long, launcher=TORCHRUN)
    assert resumed["cost"]["resumed_from_step"] >= 2
    assert resumed["mlflow_run_id"] and resumed["metrics"] == pytest.approx(whole["metrics"], rel=1e-9)
    assert _losses(cwd, resumed["mlflow_run_id"]) == pytest.approx(
        _losses(tmp_path / "whole", whole["mlflow_run_id"]), rel=1e-5)  # each step logged once, as if never killed


@pytest.mark.parametrize("preset,stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_presets_build_accelerates_plugin(preset, stage):
    from accelerate import DeepSpeedPlugin
    from hydra.utils import instantiate

    from harness.validate import target_problems

    cfg = compose([f"distributed={preset}", "trainer.grad_accum=2", "trainer.max_grad_norm=0.5",
                   "distributed.accelerator.deepspeed_plugin.offload_optimizer_device=cpu"])
    block = OmegaConf.to_container(cfg.distributed.accelerator.deepspeed_plugin, resolve=True)
    assert target_problems(block, "distributed.accelerator.deepspeed_plugin") == []
    plugin = instantiate(block)
    assert isinstance(plugin, DeepSpeedPlugin)
    ds = plugin.deepspeed_config
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["gradient_accumulation_steps"] == 2 and ds["gradient_clipping"] == 0.5
    assert (ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True) == (stage == 3)


def test_the_fsdp_preset_builds_an_fsdp2_plugin_and_bad_keys_are_refused():
    from accelerate import FullyShardedDataParallelPlugin
    from hydra.utils import instantiate

    from harness.validate import ConfigError, check

    cfg = compose(["distributed=fsdp"])
    plugin = instantiate(cfg.distributed.accelerator.fsdp_plugin)
    assert isinstance(plugin, FullyShardedDataParallelPlugin) and plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    with pytest.raises(ConfigError, match="distributed.accelerator.fsdp_plugin.reshard_after_fwd"):
        check(compose(["distributed=fsdp", "+distributed.accelerator.fsdp_plugin.reshard_after_fwd=true"]))


def test_distributed_settings_are_not_part_of_the_cell():
    """A grid means the same on 1 or 8 GPUs: a cell finished with one backend is skipped under another."""
    from harness.config import config_hash

    assert config_hash(compose(["distributed=ddp"])) == config_hash(compose([])) == config_hash(
        compose(["distributed=fsdp"]))


def test_the_qlora_fsdp_recipe_stores_4bit_weights_in_bf16():
    from hydra.utils import instantiate

    cfg = compose(["+experiment=qlora_fsdp"])
    assert cfg.distributed.name == "fsdp" and cfg.method.name == "qlora" and cfg.precision == "bf16"
    quantization = instantiate(cfg.method.quantization)
    assert quantization.load_in_4bit and str(quantization.bnb_4bit_quant_storage) == "torch.bfloat16"


def test_the_estimate_is_one_process_share():
    """FSDP over 8 processes: weights, gradients and optimizer state split 8 ways, an eighth of the batch."""
    from harness.estimate import estimate

    base = ["model=tiny_llama", "model.build.config.num_hidden_layers=16", "method=lora", "trainer.batch_size=8",
            "device=cuda", "precision=bf16"]
    one = estimate(compose(base))
    fsdp = estimate(compose([*base, "distributed=fsdp", "estimate.processes=8"]))
    ddp = estimate(compose([*base, "distributed=ddp", "estimate.processes=8"]))
    assert fsdp.optimizer_state == -(-one.optimizer_state // 8) and fsdp.weights == -(-one.weights // 8)
    assert ddp.optimizer_state == one.optimizer_state and ddp.gathered_weights == 0 < fsdp.gathered_weights
    assert ddp.activations < one.activations and fsdp.peak_bytes < ddp.peak_bytes < one.peak_bytes


def test_a_grid_of_two_process_cells_has_one_parent_run(tmp_path):
    """torchrun over a multirun: every process runs the grid, the main one alone records the sweep."""
    from mlflow.tracking import MlflowClient

    cmd = TORCHRUN + ["-m", "seed=0,1", "model=tiny_llama", "trainer=smoke", "distributed=ddp"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "runs/multirun").iterdir())) == 1  # both processes resolved one sweep dir
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.info.run_name.startswith("sweep ")]
    assert len(parents) == 1 and len(runs) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id and r.data.tags["processes"] == "2"
               for r in runs if r not in parents)
    assert proc.stdout.count("FINISHED ==") == 2  # one summary per cell, from the main process
