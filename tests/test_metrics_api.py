"""CLI errors, format writers/readers, evaluate modules, bootstrap intervals and paired tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metrics import compute, formats
from metrics.__main__ import load
from metrics.bootstrap import confidence_interval, paired_test, sufficient_stats

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "metrics" / "golden"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metrics", *args], capture_output=True, text=True, cwd=ROOT, env=ENV)


def test_cli_missing_prediction_fails_loudly(tmp_path):
    gold = GOLDEN / "clone_detection_big_clone_bench" / "official_example" / "answers.txt"
    pred = tmp_path / "p.txt"
    pred.write_text("13653451\t21955002\t0\n")
    out = _cli("clone_detection_big_clone_bench", "--gold", str(gold), "--predictions", str(pred))
    assert out.returncode == 2
    assert "missing prediction" in out.stderr and "1188160" in out.stderr and str(pred) in out.stderr


def test_cli_malformed_line_names_file_and_line(tmp_path):
    gold = GOLDEN / "nl_code_search_adv" / "official_example" / "test.jsonl"
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"url": "url0", "answers": [10]}\nnot json\n')
    out = _cli("nl_code_search_adv", "--gold", str(gold), "--predictions", str(pred))
    assert out.returncode == 2 and f"{pred}:2" in out.stderr and "JSON" in out.stderr


def test_cli_line_count_mismatch(tmp_path):
    gold = GOLDEN / "code_refinement" / "official_example" / "references.txt"
    pred = tmp_path / "p.txt"
    pred.write_text("a\n")
    out = _cli("code_refinement", "--gold", str(gold), "--predictions", str(pred))
    assert out.returncode == 2 and "1 lines" in out.stderr


def test_cli_codebleu_keys():
    case = GOLDEN / "code_to_code_trans" / "official_example"
    out = _cli("code_to_code_trans", "--gold", str(case / "references.txt"), "--predictions",
               str(case / "predictions.txt"), "--lang", "c_sharp")
    scores = json.loads(out.stdout)
    assert {"bleu", "exact_match", "codebleu", "ngram_match", "weighted_ngram_match", "syntax_match",
            "dataflow_match"} <= set(scores)


def test_writers_round_trip(tmp_path):
    p = tmp_path / "x"
    formats.write_pair_labels(p, [("1", "2", 1), ("3", "4", 0)])
    assert formats.read_pair_labels(p) == {("1", "2"): 1, ("3", "4"): 0}
    formats.write_idx_labels(p, [(0, 1), (5, 0)])
    assert formats.read_idx_labels(p) == {"0": 1, "5": 0}
    formats.write_ranked(p, [("url0", [3, 1])], key="url")
    assert formats.read_ranked(p, "url") == {"url0": [3, 1]}
    formats.write_id_text(p, [(0, "a\tb\nc")])
    assert formats.read_id_text(p, gold=False) == [("0", "a b c")]
    formats.write_lines(p, ["x y", "z"])
    assert formats.read_text_lines(p) == ["x y", "z"]
    with pytest.raises(ValueError):
        formats.write_lines(p, ["a\nb"])


def test_poj104_cli_accepts_answers_file_too():
    case = GOLDEN / "clone_detection_poj104" / "official_example"
    a = compute("clone_detection_poj104", *load("clone_detection_poj104", str(case / "answers.jsonl"), str(case / "predictions.jsonl")))
    b = compute("clone_detection_poj104", *load("clone_detection_poj104", str(case / "test.jsonl"), str(case / "predictions.jsonl")))
    assert a == b


def test_evaluate_modules_load_offline():
    code = (
        "import evaluate, json;"
        "r = {};"
        "r['ref'] = evaluate.load('metrics/code_refinement').compute(predictions=['a b c d'], references=['a b c d e']);"
        "r['bcb'] = evaluate.load('metrics/clone_detection_big_clone_bench').compute(predictions=[1, 0, 1], references=[1, 1, 1]);"
        "r['adv'] = evaluate.load('metrics/nl_code_search_adv').compute(predictions=[[2, 1]], references=[1]);"
        "print(json.dumps(r))"
    )
    env = dict(ENV, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["ref"] == compute("code_refinement", ["a b c d e"], ["a b c d"])
    assert r["bcb"]["f1"] == pytest.approx(0.8) and r["adv"] == {"mrr": 0.5}


def test_every_task_has_an_evaluate_module():
    from metrics import TASKS
    for t in TASKS:
        assert (ROOT / "metrics" / t / f"{t}.py").exists(), t


@pytest.mark.parametrize("task,refs,preds,kw", [
    ("clone_detection_big_clone_bench", [1, 0, 1, 1, 0], [1, 1, 0, 1, 0], {}),
    ("nl_code_search_webquery", [1, 0, 1, 1, 0], [1, 1, 0, 1, 0], {}),
    ("defect_detection", [1, 0, 1], [1, 1, 1], {}),
    ("clone_detection_poj104", [0, 0, 1, 1], [[1], [2], [0], [2]], {}),
    ("nl_code_search_adv", [0, 1], [[1, 0], [1]], {}),
    ("code_completion_token", [["<s>", "a", "b"]], [["x", "a", "c"]], {}),
    ("code_completion_line", ["a b", "c"], ["a b", "d"], {}),
    ("code_to_text", ["returns x", "gets y"], ["returns y", None], {}),
    ("text_to_code", ["int f ( ) { return 1 ; }", "a b c"], ["int f ( ) { return 2 ; }", "a b c"], {"lang": "java"}),
])
def test_sufficient_stats_reproduce_compute(task, refs, preds, kw):
    st = sufficient_stats(task, refs, preds, **kw)
    direct = compute(task, refs, preds, **kw)
    from_stats = st.finalize(st.rows.sum(axis=0))
    for k, v in from_stats.items():
        assert v == pytest.approx(direct[k], rel=1e-9, abs=1e-12), k


def _bleu_corpus(n: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(50)]
    refs = [" ".join(rng.choice(words, size=20)) for _ in range(n)]
    hyps = [" ".join(t if rng.random() > 0.3 else "x" for t in r.split()) for r in refs]
    return refs, hyps


def test_confidence_interval_contains_point_and_is_fast():
    refs, hyps = _bleu_corpus(2000)
    t = time.perf_counter()
    ci = confidence_interval("code_refinement", refs, hyps, n_resamples=500, seed=0)
    assert time.perf_counter() - t < 20
    point = compute("code_refinement", refs, hyps)
    for k in ("bleu", "exact_match"):
        lo, hi = ci[k]
        assert lo <= point[k] <= hi
    lo, hi = ci["bleu"]
    assert 0 < hi - lo < 5
    assert ci == confidence_interval("code_refinement", refs, hyps, n_resamples=500, seed=0)  # seeded


def test_paired_tests():
    refs, hyps = _bleu_corpus(300)
    same = paired_test("code_refinement", refs, hyps, hyps, n_resamples=200)
    assert same["p_value"] == 1.0 and same["method"] == "paired_bootstrap"
    better = paired_test("code_refinement", refs, hyps, refs, n_resamples=200)
    assert better["p_value"] < 0.01 and better["delta"] > 0
    y = [1] * 30 + [0] * 30
    a = [1] * 30 + [1] * 30  # 30 discordant, all favouring B
    mc = paired_test("defect_detection", y, a, y)
    assert mc["method"] == "mcnemar_exact" and mc["p_value"] == pytest.approx(2 * 0.5 ** 30)
