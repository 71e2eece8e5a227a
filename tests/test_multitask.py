"""Multi-task adapters (tasks/multitask.py): one adapter trained on several tasks, MFTCoder's loss
balancing, each member scored as its own cell scores it, and one leaderboard entry per member."""
from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import torch

from harness.config import config_hash
from harness.run import run
from harness.validate import ConfigError, check
from tasks.multitask_loss import balanced_loss
from tests.conftest import ROOT, compose, harness_cmd, subprocess_env

MEMBERS = ["concode", "translation_java_cs"]
SMALL = ["model=tiny_t5", "trainer=smoke", "trainer.max_eval_examples=6", "task.max_target_length=12"]


def _multitask(*extra: str):
    return compose(["+experiment=multitask", f"multitask.tasks=[{','.join(MEMBERS)}]", "model=tiny_t5",
                    "trainer=smoke", "trainer.max_eval_examples=6", "+multitask.member_overrides.max_target_length=12",
                    *extra])


# ---- the balancing schemes on a hand-made batch --------------------------------------------------
# Three examples: two of task 0 (token-loss sums 2 over 1 token and 6 over 3 tokens), one of task 1
# (sum 1 over 4 tokens); token-probability sums 0.5, 0.9 and 2.0.
SUMS, COUNTS, PROBS = torch.tensor([2.0, 6.0, 1.0]), torch.tensor([1.0, 3.0, 4.0]), torch.tensor([0.5, 0.9, 2.0])
TASK = torch.tensor([0, 0, 1])


def test_equal_weights_each_task_mean_token_loss_equally():
    # task 0: (2 + 6) / (1 + 3) = 2; task 1: 1 / 4 = 0.25; mean over the two tasks
    assert math.isclose(balanced_loss(SUMS, COUNTS, PROBS, TASK, "equal").item(), (2 + 0.25) / 2, rel_tol=1e-6)


def test_samples_weights_every_example_equally():
    # example means 2, 2, 0.25: task 0 weighs 2/3, task 1 1/3
    assert math.isclose(balanced_loss(SUMS, COUNTS, PROBS, TASK, "samples").item(), (2 + 2 + 0.25) / 3, rel_tol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_weights_a_worse_predicted_task_up(gamma):
    p0, p1 = (0.5 / 1 + 0.9 / 3) / 2, 2.0 / 4  # each task's mean token probability: 0.4 and 0.5
    expected = (-(1 - p0) ** gamma * math.log(p0) - (1 - p1) ** gamma * math.log(p1)) / 2
    assert math.isclose(balanced_loss(SUMS, COUNTS, PROBS, TASK, "focal", gamma).item(), expected, rel_tol=1e-6)


def test_only_the_tasks_present_count_and_unlabelled_examples_add_nothing():
    sums, counts, probs = torch.tensor([2.0, 5.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.0])
    assert math.isclose(balanced_loss(sums, counts, probs, torch.tensor([0, 1]), "equal").item(), 2.0)
    with pytest.raises(ValueError, match="multitask.balance='mean'"):
        balanced_loss(SUMS, COUNTS, PROBS, TASK, "mean")


@pytest.mark.parametrize("model,head", [("tiny_llama", "causal_lm"), ("tiny_t5", "seq2seq_lm"),
                                        ("tiny_llama_prompt", "causal_lm")])
def test_token_losses_add_up_to_the_models_own_loss(model, head):
    """Per-example token sums over all examples / all tokens = the head's own mean loss (prompt
    masked, padding, virtual tokens of prompt tuning)."""
    from harness.env import pick_device
    from harness.models import load_model
    from tasks.multitask_loss import token_losses

    name, method = (model.split("_prompt")[0], "prompt") if model.endswith("_prompt") else (model, "lora")
    cfg = compose([f"model={name}", f"method={method}"])
    net, _ = load_model(cfg.model, cfg.method, head, pick_device("cpu"))
    net.eval()
    torch.manual_seed(0)
    ids = torch.randint(10, 4000, (3, 24))
    labels = ids.clone() if head == "causal_lm" else torch.randint(10, 4000, (3, 12))
    labels[:, :5] = -100 if head == "causal_lm" else labels[:, :5]
    labels[2, 9:] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    sums, counts, probs = token_losses(net, batch)
    assert float(sums.sum() / counts.sum()) == pytest.approx(float(net(**batch).loss), abs=1e-5)
    assert bool((probs <= counts).all()) and bool((probs > 0).all())


# ---- config ------------------------------------------------------------------------------------
def test_each_balance_is_its_own_cell():
    hashes = {b: config_hash(_multitask(f"multitask.balance={b}")) for b in ("equal", "samples", "focal")}
    assert len(set(hashes.values())) == 3
    assert config_hash(_multitask("multitask.gamma=1.0", "multitask.balance=focal")) != hashes["focal"]
    assert _multitask("multitask.balance=focal").task.name == "multitask_focal"


def test_bad_member_names_and_balance_are_refused_before_loading():
    with pytest.raises(ConfigError) as err:
        check(_multitask("multitask.tasks=[concode,concodee]", "multitask.balance=average"))
    text = str(err.value)
    assert "multitask.tasks: 'concodee' is not a task of conf/task (did you mean concode?)" in text
    assert "multitask.balance='average': must be one of equal, samples, focal" in text
    done = subprocess.run(harness_cmd("+experiment=multitask", "multitask.tasks=[concode,nope]", "tracker=none"),
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        next(line for line in done.stderr.splitlines() if "'nope' is not a task of conf/task" in line)]


def test_a_classification_and_generation_mix_is_skipped_with_its_reason(tmp_path):
    cfg = compose(["+experiment=multitask", "multitask.tasks=[defect,concode]", "trainer=smoke", "tracker=none"])
    result = run(cfg, tmp_path / "cell")
    assert result.status == "SKIPPED"
    assert result.reason.startswith("multitask defect+concode: ") and "defect" in result.reason.split(": ", 1)[1]


# ---- one cell end to end -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A 2-task multi-task cell and the single-task concode cell, on tiny_t5 with the smoke trainer."""
    root = tmp_path_factory.mktemp("multitask")
    multi = run(_multitask("multitask.balance=focal", "tracker=mlflow"), root / "multi")
    single = run(compose(["task=concode", *SMALL, "tracker=none"]), root / "single")
    return root, multi, single


def test_one_adapter_is_scored_on_every_member_as_its_own_cell(cells):
    import metrics
    from metrics.registry import spec

    root, multi, single = cells
    assert multi.status == "FINISHED", multi.reason
    written = json.loads((root / "multi" / "result.json").read_text())
    assert set(written["per_task"]) == set(MEMBERS)
    assert set(written["per_task"]["concode"]) == set(single.metrics)  # the same keys as the task's own cell
    for task in MEMBERS:
        gold, pred = (root / "multi" / "predictions" / task / os.path.basename(written["files"][f"{task}/{k}"])
                      for k in ("gold", "predictions"))
        own = compose([f"task={task}"]).task
        refs, preds = spec(own.metric).read(str(gold), str(pred))
        assert refs, f"{task}: no test rows in the mix"
        rescored = metrics.compute(own.metric, refs, preds, **own.metric_kwargs)
        assert {k: written["per_task"][task][k] for k in rescored} == pytest.approx(rescored)
        assert written["metrics"][f"{task}.{own.primary_metric}"] == written["per_task"][task][own.primary_metric]
    primaries = [written["per_task"][t]["bleu"] for t in MEMBERS]
    assert written["metrics"]["multitask.mean_primary"] == pytest.approx(sum(primaries) / 2)
    assert written["primary_metric"] == "multitask.mean_primary"


def test_mlflow_gets_every_member_metric(cells):
    from mlflow import MlflowClient

    _, multi, _ = cells
    logged = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(multi.mlflow_run_id).data.metrics
    assert {"multitask.mean_primary", "concode.bleu", "translation_java_cs.bleu",
            "translation_java_cs.codebleu"} <= set(logged)
    for task in MEMBERS:  # each member's official files, in its own folder of the run's artifacts
        files = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).list_artifacts(multi.mlflow_run_id, f"predictions/{task}")
        assert len(files) == 2, task


def test_the_leaderboard_shows_the_multitask_entry_in_both_columns(cells):
    from harness.leaderboard import build, from_runs_dir

    root, multi, _ = cells
    board = build(from_runs_dir(root))
    assert set(board.tasks) == set(MEMBERS)
    label = ("tiny_t5", "lora (multitask_focal: concode+translation_java_cs)")
    assert set(board.rows[label]) == set(MEMBERS)
    assert set(board.rows[("tiny_t5", "lora")]) == {"concode"}  # the single-task adapter beside it
    entry = board.rows[label]["concode"]
    assert entry.records[0]["primary_value"] == multi.per_task["concode"]["bleu"]
