"""Every option of every config group composes and instantiates; unknown options fail helpfully."""
from __future__ import annotations

import subprocess

import pytest
from hydra.utils import instantiate

from conftest import CONF, ROOT, compose, harness_cmd, subprocess_env
from harness.env import pick_device
from harness.models import load_model, load_tokenizer
from harness.run import run

GROUPS = ("task", "model", "method", "trainer", "tracker")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_required_options_exist():
    assert {"minilm", "tiny_llama", "tiny_t5", "tiny_bert"} <= set(options("model"))
    assert {"full", "lora", "qlora"} <= set(options("method"))
    assert {"default", "smoke"} <= set(options("trainer"))
    assert {"mlflow", "none"} <= set(options("tracker"))
    assert "clone_bcb" in options("task")


@pytest.mark.parametrize("task", options("task"))
def test_task_composes_and_loads_validated_splits(task):
    cfg = compose([f"task={task}"])
    t = instantiate(cfg.task, _convert_="all")
    assert t.primary_metric in __import__("metrics").METRIC_KEYS[t.metric]
    if t.source.get("benchmark") and not t.data_dir:  # a test split only the user's copy of the benchmark holds
        with pytest.raises(ValueError, match=r"not shipped.*task\.data_dir=DIR"):
            t.load_splits()
        return
    if t.source.get("hub") and not t.source.get("shipped"):  # a variant with no real rows offline
        with pytest.raises(ValueError, match=r"no real rows are shipped.*task\.data_dir=DIR"):
            t.load_splits()
        return
    if (getattr(t, "stream", None) or {}).get("hub"):  # a streamed hub corpus: offline it needs a mirror
        with pytest.raises(ValueError, match=r"streaming needs the hub.*hub_mirror=DIR"):
            t.load_splits()
        return
    if t.source.get("data_dir") == "required":  # nothing ships (CodeNet): the error says what to pass
        with pytest.raises(ValueError, match=r"task\.data_dir is not set; expected"):
            t.load_splits()
        return
    splits = t.load_splits()
    assert splits["train"] and splits["test"]


@pytest.mark.parametrize("model", options("model"))
def test_model_composes_and_loads_offline(model, in_tmp):
    cfg = compose([f"model={model}", "method=lora"])
    if cfg.model.get("hub"):  # hub checkpoints: offline, the cell fails with a fix-it message
        result = run(compose([f"model={model}", "trainer=smoke", "tracker=none"]), in_tmp / "cell")
        assert result.status == "FAILED" and cfg.model.path in result.reason and "HF_HUB_OFFLINE=0" in result.reason
        return
    tokenizer = load_tokenizer(cfg.model)
    assert tokenizer("def f(x): return x")["input_ids"]
    net, _ = load_model(cfg.model, cfg.method, "sequence_classification", pick_device("cpu"), {"num_labels": 2})
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) > 0


@pytest.mark.parametrize("method", options("method"))
def test_method_composes_and_attaches(method):
    cfg = compose([f"method={method}", "model=tiny_bert"])
    from harness.compat import method_unsupported

    if why := method_unsupported(cfg.method, cfg.model.family, "sequence_classification", pick_device("cpu")):
        pytest.skip(why)
    net, _ = load_model(cfg.model, cfg.method, "sequence_classification", pick_device("cpu"), {"num_labels": 2})
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in net.parameters())
    assert 0 < trainable <= total
    assert instantiate(cfg.method.optimizer)(net).param_groups


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_composes(trainer):
    cfg = compose([f"trainer={trainer}"])
    assert cfg.trainer.batch_size > 0 and cfg.trainer.eval_batch_size > 0
    assert cfg.trainer.max_steps or cfg.trainer.epochs


@pytest.mark.parametrize("tracker", options("tracker"))
def test_tracker_composes_and_instantiates(tracker, in_tmp):
    cfg = compose([f"tracker={tracker}"])
    t = instantiate(cfg.tracker)
    t.start("probe", {"config_hash": "x"})
    t.log_metrics({"m": 1.0}, step=1)
    t.end("FINISHED")


def test_qlora_extends_lora_by_defaults():
    lora, qlora = compose(["method=lora"]).method, compose(["method=qlora"]).method
    assert qlora.peft == lora.peft and qlora.quantization.load_in_4bit


def test_unknown_option_lists_the_available_ones():
    proc = subprocess.run(harness_cmd("method=nope"), cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "Could not find 'method/nope'" in proc.stderr
    for name in ("full", "lora", "qlora"):
        assert name in proc.stderr
