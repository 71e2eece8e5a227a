"""Bad config fails early: a bad value stops `python -m harness` before any model or data loads, with
one line naming the key, the value and what is allowed, exit code 2 and no traceback; in a multirun
the bad cell is FAILED with the same line and the other cells still run."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import CONF, compose, harness_cmd, subprocess_env
from harness.validate import ConfigError, check

FAST = ("model=tiny_bert", "trainer=smoke", "tracker=none")
CASES = [  # (overrides, the one line on stderr)
    (["trainer.batch_size=0"], "config error: trainer.batch_size=0: must be a positive integer"),
    (["trainer.eval_batch_size=-4"], "config error: trainer.eval_batch_size=-4: must be a positive integer"),
    (["trainer.max_steps=0"], "config error: trainer.max_steps=0: must be null or a positive integer"),
    (["model.max_length=0"], "config error: model.max_length=0: must be a positive integer"),
    (["task.max_source_length=-1"], "config error: task.max_source_length=-1: must be a positive integer"),
    (["task=concode", "task.syntax_language=cobol"],
     "config error: task.syntax_language='cobol': must be null or one of java, javascript, c_sharp, "),
    (["method.optimizer.lr=-0.001"], "config error: method.optimizer.lr=-0.001: must be a finite number >= 0"),
    (["method.optimizer.lr=nan"], "config error: method.optimizer.lr=nan: must be a finite number >= 0"),
    (["method.optimizer.lr=inf"], "config error: method.optimizer.lr=inf: must be a finite number >= 0"),
    (["+method.peft.lora_alpah=16"],
     "config error: method.peft.lora_alpah=16: not a parameter of peft.LoraConfig (did you mean lora_alpha?); "
     "allowed: "),
    (["method=qlora", "+method.quantization.load_in_3bit=true"],
     "config error: method.quantization.load_in_3bit=true: not a parameter of transformers.BitsAndBytesConfig "
     "(did you mean load_in_8bit?); allowed: bnb_4bit_compute_dtype, "),
    (["trainer.batch_size=abc"], "config error: trainer.batch_size='abc': must be a positive integer"),
    (["method.peft.r=eight"], "config error: method.peft.r='eight': must be int, as peft.LoraConfig types it"),
    (["trainer.batch_size=${oc.env:HARNESS_NO_SUCH_VARIABLE}"],
     "config error: trainer.batch_size: KeyError raised while resolving interpolation: "
     "\"Environment variable 'HARNESS_NO_SUCH_VARIABLE' not found\""),
]


@pytest.mark.parametrize("overrides,line", CASES, ids=[c[0][-1] for c in CASES])
def test_bad_value_fails_before_loading_with_one_line(overrides, line, in_tmp):
    start = time.monotonic()
    proc = subprocess.run(harness_cmd(*FAST, *overrides, f"hydra.run.dir={in_tmp}/cell"), cwd=in_tmp,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("config error:")]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "[harness] data:" not in proc.stdout and not (in_tmp / "cell" / "result.json").exists()  # nothing loaded
    assert seconds < 90, f"{seconds:.0f} s: the check should come before any model or data loads"


def test_a_multirun_fails_the_bad_cell_and_runs_the_others(in_tmp):
    proc = subprocess.run(harness_cmd("-m", *FAST, "trainer.max_steps=1", "trainer.batch_size=0,2",
                                      f"hydra.sweep.dir={in_tmp}/sweep"),
                          cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]  # a sweep with a FAILED cell exits non-zero
    line = "config error: trainer.batch_size=0: must be a positive integer"
    assert line in proc.stderr.splitlines() and "Traceback" not in proc.stderr
    records = {json.loads(p.read_text())["status"]: json.loads(p.read_text())
               for p in (in_tmp / "sweep").glob("*/result.json")}
    assert set(records) == {"FAILED", "FINISHED"}, records
    assert records["FAILED"]["reason"] == line and records["FAILED"]["model"] == "tiny_bert"
    assert "1 FINISHED, 1 FAILED, 0 SKIPPED" in proc.stdout
    assert "trainer.batch_size=0: must be a positive integer" in (in_tmp / "sweep" / "comparison.md").read_text()


def test_every_shipped_config_passes_the_checks():
    for group in ("task", "model", "method", "trainer", "tracker"):
        for name in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            try:
                check(compose([f"{group}={name}"]))
            except ConfigError as err:
                pytest.fail(f"{group}={name}: {err}")


def test_several_bad_values_are_all_named():
    with pytest.raises(ConfigError) as err:
        check(compose(["trainer.batch_size=0", "method.optimizer.lr=-1.0", "+method.peft.bogus=1"]))
    assert [p.split(":")[0] for p in err.value.problems] == [
        "trainer.batch_size=0", "method.optimizer.lr=-1.0", "method.peft.bogus=1"]


def test_nested_and_non_peft_blocks_are_checked_against_their_targets():
    with pytest.raises(ConfigError, match=r"method\.peft\.loftq_config\.bits=2: not a parameter of peft\.LoftQConfig"):
        check(compose(["method=loftq", "+method.peft.loftq_config.bits=2"]))
    with pytest.raises(ConfigError, match=r"method\.attach\.reduction=4: not a parameter of harness\.methods\.adapter"
                                          r"\.attach \(did you mean reduction_factor\?\)"):
        check(compose(["method=adapter", "+method.attach.reduction=4"]))


def test_methods_share_one_base_instead_of_repeating_it():
    base = compose(["method=lora"]).method
    for path in sorted((CONF / "method").glob("*.yaml")):
        text = path.read_text()
        for repeated in ("quantization: null", "prepare: null", "supports: {}", "_target_: harness.optim.adamw"):
            assert repeated not in text, f"{path.name} repeats `{repeated}`: it comes from method/base/default.yaml"
        assert re.search(r"^  - (base@_here_: default|\w+)$", text, re.M), f"{path.name} has no base in its defaults"
        method = compose([f"method={path.stem}"]).method
        assert set(base) <= set(method) and method.name == path.stem
        assert method.optimizer.get("_partial_") is True and method.optimizer.lr > 0

