"""Every task kind end to end on every model family that can do it (tiny models, shipped real
data), SKIPPED with a reason where it cannot; written prediction files rescore with `metrics`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra.utils import instantiate

import metrics
from conftest import ROOT, compose, subprocess_env
from harness.run import run
from metrics.__main__ import main as metrics_main

SHORT = "task.max_target_length=12"   # generation: a few new tokens keep the smoke runs fast

FINISHED_CELLS = [
    ("defect", "tiny_bert", []),                       # classification
    ("search_webquery", "tiny_t5", []),
    ("search_adv", "tiny_bert", []),                   # retrieval, every family
    ("search_adv", "tiny_llama", []),
    ("search_adv", "tiny_t5", []),
    ("clone_poj104", "tiny_llama", []),
    ("refinement_small", "tiny_llama", [SHORT]),       # generation, decoders and seq2seq
    ("refinement_small", "tiny_t5", [SHORT]),
    ("translation_java_cs", "tiny_t5", [SHORT, "task.num_beams=2"]),
    ("concode", "tiny_llama", [SHORT]),
    ("summarize_ruby", "tiny_t5", [SHORT]),
    ("summarize_python", "tiny_llama", [SHORT]),
    ("completion_line_python", "tiny_llama", [SHORT]),
    ("completion_line_java", "tiny_t5", [SHORT]),
    ("completion_token_java", "tiny_llama", []),      # token level: decoders
    ("completion_token_python", "tiny_llama", []),
]


def rescore(task, files: dict) -> list[str]:
    """The `python -m metrics` arguments that rescore the written official files."""
    lang = task.metric_kwargs.get("lang")
    argv = [task.metric, "--gold", files["gold"], "--predictions", files["predictions"]]
    return argv + (["--lang", lang] if lang else [])


@pytest.mark.parametrize("task,model,extra", FINISHED_CELLS, ids=[f"{t}-{m}" for t, m, _ in FINISHED_CELLS])
def test_task_runs_and_its_files_rescore(task, model, extra, in_tmp, capsys):
    cfg = compose([f"task={task}", f"model={model}", "trainer=smoke", "tracker=none", *extra])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    t = instantiate(cfg.task, _convert_="all")
    assert result.primary_metric == t.primary_metric
    assert result.primary_value == result.metrics[t.primary_metric]
    for key in metrics.METRIC_KEYS[t.metric]:
        assert key in result.metrics, key
    capsys.readouterr()
    assert metrics_main(rescore(t, result.files)) == 0
    printed = json.loads(capsys.readouterr().out)["unrounded"]
    extra = {"syntax_valid_rate"} if t.syntax_language else set()  # beside the official metrics
    assert set(result.metrics) == set(printed) | extra
    for key in printed:
        assert printed[key] == pytest.approx(result.metrics[key], abs=1e-9), key
    if extra:
        assert 0.0 <= result.metrics["syntax_valid_rate"] <= 1.0


@pytest.mark.parametrize("task,model", [("refinement_small", "tiny_bert"), ("completion_line_python", "tiny_bert"),
                                        ("completion_token_python", "tiny_t5"), ("completion_token_java", "tiny_bert")])
def test_impossible_combination_is_skipped_with_its_reason(task, model, in_tmp):
    result = run(compose([f"task={task}", f"model={model}", "trainer=smoke", "tracker=none"]), in_tmp / "cell")
    assert result.status == "SKIPPED"
    assert "needs a model family in" in result.reason and "\n" not in result.reason
    assert json.loads((in_tmp / "cell" / "result.json").read_text())["status"] == "SKIPPED"


def test_variant_without_real_rows_fails_with_a_fix_it_message(in_tmp):
    result = run(compose(["task=summarize_go", "model=tiny_t5", "trainer=smoke", "tracker=none"]), in_tmp / "cell")
    assert result.status == "FAILED"
    assert "no real rows are shipped" in result.reason and "task.data_dir=DIR" in result.reason
    assert "google/code_x_glue_ct_code_to_text[go]" in result.reason


def test_python_m_metrics_rescores_a_run(in_tmp):
    cfg = compose(["task=summarize_ruby", "model=tiny_t5", "trainer=smoke", "tracker=none", SHORT])
    result = run(cfg, in_tmp / "cell")
    proc = subprocess.run([sys.executable, "-m", "metrics", "code_to_text", "--gold", result.files["gold"],
                           "--predictions", result.files["predictions"]], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["unrounded"]["bleu"] == pytest.approx(result.metrics["bleu"])


def test_retrieval_ranks_against_the_whole_pool_whatever_the_batch(in_tmp):
    """With eval batches of one, every query still gets the full pool ranked (never a batch pool)."""
    cfg = compose(["task=search_adv", "model=tiny_bert", "trainer=smoke", "tracker=none",
                   "trainer.eval_batch_size=1"])
    result = run(cfg, in_tmp / "cell")
    lines = [json.loads(x) for x in open(result.files["predictions"])]
    gold = [json.loads(x) for x in open(result.files["gold"])]
    assert len(lines) == len(gold) and all(len(x["answers"]) == len(gold) for x in lines)
    assert all(sorted(x["answers"]) == sorted(g["idx"] for g in gold) for x in lines)
