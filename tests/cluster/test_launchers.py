"""One grid through every launcher this machine can run (Hydra's basic one, joblib, submitit's local
executor): one parent MLflow run per sweep and one child run per cell under it, a relaunch of the
same sweep SKIPs the FINISHED cells and resumes a killed one in its own run, under the same parent.
The SLURM preset cannot run here: it is checked as the config and the sbatch script it makes."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CONF, harness_cmd, subprocess_env
from harness import liveness

SMOKE = ("model=tiny_bert", "trainer=smoke")
PARENT = "mlflow.parentRunId"
LAUNCHERS = {
    "basic": (),
    "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
    "submitit_local": ("hydra/launcher=local",),   # conf/hydra/launcher/local.yaml: the plugin's submitit_local
}


def _sweep(cwd: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run a grid; its output and its sweep folder, the only one: the sweep and each cell, in whatever
    process the launcher ran it, resolved the same (timestamped unless hydra.sweep.dir is given)."""
    proc = subprocess.run(harness_cmd("-m", *SMOKE, *overrides), cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, _sweep_dir(cwd)


def _sweep_dir(cwd: Path) -> Path:
    folders = list((cwd / "runs" / "multirun").iterdir())
    assert len(folders) == 1, f"one sweep, several folders: {sorted(f.name for f in folders)}"
    return folders[0]


def _results(sweep: Path) -> dict[str, dict]:
    """result.json of each cell of the sweep, by its folder name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


def _client(cwd: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{cwd}/runs/mlflow.db")


def _runs(cwd: Path) -> tuple[list, list]:
    """The store's parent runs (no parent tag) and child runs."""
    client = _client(cwd)
    runs = client.search_runs([client.get_experiment_by_name("codexglue").experiment_id], max_results=100)
    return [r for r in runs if PARENT not in r.data.tags], [r for r in runs if PARENT in r.data.tags]


def _hierarchy(cwd: Path, sweep: Path) -> dict:
    """What a launcher must not change: one FINISHED parent run, the one named in the sweep folder,
    and one FINISHED child under it for each cell, the run its result.json names."""
    parents, children = _runs(cwd)
    parent_id = (sweep / "parent_run_id").read_text()
    by_seed = {r["seed"]: r["mlflow_run_id"] for r in _results(sweep).values()}
    return {"parents": [(p.info.run_id == parent_id, p.info.status) for p in parents],
            "children": sorted((c.data.tags["seed"], c.data.tags[PARENT] == parent_id, c.info.status,
                                c.info.run_id == by_seed.get(int(c.data.tags["seed"]))) for c in children)}


ONE_PARENT_TWO_CHILDREN = {"parents": [(True, "FINISHED")],
                           "children": [("0", True, "FINISHED", True), ("1", True, "FINISHED", True)]}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_gives_one_parent_run_per_sweep_and_a_relaunch_skips_finished_cells(in_tmp, launcher):
    first, sweep = _sweep(in_tmp, "seed=0,1", *LAUNCHERS[launcher])
    results = _results(sweep)
    assert sorted((r["seed"], r["status"]) for r in results.values()) == [(0, "FINISHED"), (1, "FINISHED")]
    assert "2 FINISHED, 0 FAILED, 0 SKIPPED" in first.stdout
    assert _hierarchy(in_tmp, sweep) == ONE_PARENT_TWO_CHILDREN
    [parent], children = _runs(in_tmp)
    cell_pids = {c.data.tags["harness.pid"] for c in children}
    if launcher == "basic":
        assert cell_pids == {parent.data.tags["harness.pid"]}   # the cells ran in the sweep's process
    else:
        assert parent.data.tags["harness.pid"] not in cell_pids  # each in a process of the launcher's
    if launcher == "submitit_local":
        assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2   # a job (and its log) per cell

    again, _ = _sweep(in_tmp, "seed=0,1", *LAUNCHERS[launcher], f"hydra.sweep.dir={sweep}")
    assert "0 FINISHED, 0 FAILED, 2 SKIPPED" in again.stdout
    for name, record in _results(sweep).items():
        assert record["status"] == "SKIPPED"
        assert record["reason"].startswith(f"already FINISHED as MLflow run {results[name]['mlflow_run_id']}")
    assert _hierarchy(in_tmp, sweep) == ONE_PARENT_TWO_CHILDREN   # the same parent run, no run added
    assert _runs(in_tmp)[0][0].data.tags["harness.resumed"] == "true"


STEPS, EVERY = 20, 4
# Two cells: one of 3 steps, one of 20 that checkpoints every 4 and logs every step.
RESUMABLE = ("hydra/launcher=local", f"trainer.max_steps=3,{STEPS}", f"trainer.checkpoint_every={EVERY}",
             "trainer.log_every=1")


def _kill_when_short_finished_and_long_checkpointed(cwd: Path) -> None:
    """Launch the sweep and SIGKILL all of it (the sweep, submitit's controllers and jobs: one
    process group) once the short cell's job is over (submitit wrote its result: the cell's run ended
    and its lock given back) and the long one has written a checkpoint."""
    proc = subprocess.Popen(harness_cmd("-m", *SMOKE, *RESUMABLE), cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if list(cwd.glob("runs/multirun/*/.submitit/*/*_result.pkl")) and list(
                    cwd.glob("runs/checkpoints/*/checkpoint.pt")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it was killed"
        assert time.time() < deadline, "no checkpoint of the long cell within 300 s"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_submitit_sweep_relaunched_resumes_its_cell_in_its_run_under_its_parent(in_tmp):
    _kill_when_short_finished_and_long_checkpointed(in_tmp)
    sweep = _sweep_dir(in_tmp)
    [parent], children = _runs(in_tmp)
    parent_id = (sweep / "parent_run_id").read_text()
    assert (parent.info.run_id, parent.info.status) == (parent_id, "RUNNING")   # left so by the kill
    [killed] = [c for c in children if c.info.status == "RUNNING"]
    [short] = [c for c in children if c.info.status == "FINISHED"]

    again, _ = _sweep(in_tmp, *RESUMABLE, f"hydra.sweep.dir={sweep}")
    assert "1 FINISHED, 0 FAILED, 1 SKIPPED" in again.stdout
    by_steps = {r["cost"].get("train_steps", 3): r for r in _results(sweep).values()}
    assert by_steps[3]["status"] == "SKIPPED"
    assert by_steps[3]["reason"].startswith(f"already FINISHED as MLflow run {short.info.run_id}")
    resumed = by_steps[STEPS]
    assert (resumed["status"], resumed["mlflow_run_id"]) == ("FINISHED", killed.info.run_id)   # the same run
    assert resumed["cost"]["resumed_from_step"] > 0 and resumed["cost"]["resumed_from_step"] % EVERY == 0

    client = _client(in_tmp)
    run = client.get_run(killed.info.run_id)
    assert run.data.tags["harness.resumed"] == "true" and run.data.tags[PARENT] == parent_id
    history = sorted(m.step for m in client.get_metric_history(killed.info.run_id, "train_loss"))
    assert history == list(range(1, STEPS + 1))   # every step logged once, across the kill
    parents, children = _runs(in_tmp)
    assert [(p.info.run_id, p.info.status) for p in parents] == [(parent_id, "FINISHED")]   # continued, not a second
    assert sorted(c.info.run_id for c in children) == sorted([killed.info.run_id, short.info.run_id])
    assert all(c.info.status == "FINISHED" and c.data.tags[PARENT] == parent_id for c in children)
    assert client.search_model_versions(f"name = '{liveness.LOCKS_MODEL}'") == []   # the killed job's lock cleared


def _hydra_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra


def test_slurm_preset_composes_the_launcher_with_its_fields_and_overrides(monkeypatch):
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")
    hydra_cfg = _hydra_config(["hydra/launcher=slurm", "hydra.sweep.dir=/shared/sweeps/s1",
                               "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                               "hydra.launcher.timeout_min=30", "hydra.launcher.mem_gb=128",
                               "hydra.launcher.array_parallelism=3"])
    launcher = hydra_cfg.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.timeout_min, launcher.mem_gb,
            launcher.array_parallelism) == (4, 4, 30, 128, 3)
    assert (launcher.cpus_per_task, launcher.max_num_timeout) == (8, 3)   # the preset's defaults
    assert launcher.partition is None and launcher.account == "proj42"    # SBATCH_* of the site, else null
    assert launcher.submitit_folder == "/shared/sweeps/s1/.submitit/%j"
    monkeypatch.setenv("SBATCH_PARTITION", "gpu")
    assert _hydra_config(["hydra/launcher=slurm"]).launcher.partition == "gpu"
    assert _hydra_config(["hydra/launcher=slurm", "hydra.launcher.partition=a100"]).launcher.partition == "a100"


def test_local_preset_keeps_the_gpu_and_a_day_long_timeout():
    launcher = _hydra_config(["hydra/launcher=local"]).launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert (launcher.gpus_per_node, launcher.timeout_min) == (1, 1440)   # the plugin's: hide every GPU, 60 min


FAKE_SBATCH = """#!/bin/sh
cp "$1" "$SBATCH_CAPTURE"
echo "sbatch: error: no SLURM on this machine (test)" >&2
exit 1
"""


@pytest.mark.slow
def test_slurm_preset_asks_sbatch_for_its_fields(in_tmp):
    """A stand-in sbatch keeps the script submitit hands it and refuses the job: the #SBATCH lines
    are what a cluster would be asked for."""
    bin_dir = in_tmp / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\nexit 1\n")):  # submitit looks for srun first
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = {**subprocess_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_CAPTURE": str(in_tmp / "job.sh")}
    proc = subprocess.run(harness_cmd("-m", *SMOKE, "seed=0,1", "hydra.sweep.dir=runs/multirun/s",
                                      "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                      "hydra.launcher.gpus_per_node=2", "hydra.launcher.tasks_per_node=2",
                                      "hydra.launcher.timeout_min=30", "hydra.launcher.mem_gb=32",
                                      "hydra.launcher.array_parallelism=1"),
                          cwd=in_tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "no SLURM on this machine" in proc.stderr
    script = (in_tmp / "job.sh").read_text()
    folder = in_tmp / "runs/multirun/s/.submitit/%j"
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --time=30", "#SBATCH --mem=32GB", "#SBATCH --cpus-per-task=8", "#SBATCH --array=0-1%1",
                 "#SBATCH --job-name=harness", "#SBATCH --signal=USR2@120"):
        assert line in script.splitlines(), f"{line} not in\n{script}"
    assert f"#SBATCH --output={folder.parent}/%A_%a/%A_%a_0_log.out" in script.splitlines(), script
    assert "-m submitit.core._submit" in script
