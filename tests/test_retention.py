"""trainer.retention: LM loss and token accuracy on held-out code (this machine's stdlib, or a
directory) before and after fine-tuning, in result.json, MLflow and the leaderboard."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sysconfig
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import ROOT, compose, harness_cmd, subprocess_env
from harness.leaderboard import build, from_runs_dir
from harness.leaderboard_render import RENDERERS
from harness.run import run
from harness.validate import ConfigError, check

CORPUS_CELL = ["task=code_corpus", "task.include=[json/*.py]", "model=tiny_llama", "trainer=smoke"]
SCORES = ("loss_before", "loss_after", "delta_loss", "token_accuracy_before", "token_accuracy_after",
          "delta_token_accuracy")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Two seeds of a code_corpus cell on tiny_llama with stdlib retention (under board/), and the
    same seed-0 cell without it."""
    root = tmp_path_factory.mktemp("retention")
    out = {}
    for name, extra in (("on0", ["seed=0", "trainer.retention=stdlib"]), ("on1", ["seed=1", "trainer.retention=stdlib"]),
                        ("off0", ["seed=0"])):
        cfg = compose([*CORPUS_CELL, "tracker=mlflow", "trainer.retention_max_tokens=2048", *extra])
        where = root / ("board" if name.startswith("on") else "plain") / name
        out[name] = (run(cfg, where), json.loads((where / "result.json").read_text()))
        assert out[name][0].status == "FINISHED", out[name][0].reason
    out["board"] = root / "board"
    return out


def test_stdlib_retention_before_after_and_provenance(cells):
    result, record = cells["on0"]
    metrics = {k: record["metrics"][f"retention.{k}"] for k in SCORES}
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["delta_loss"] == metrics["loss_after"] - metrics["loss_before"]
    assert metrics["delta_token_accuracy"] == metrics["token_accuracy_after"] - metrics["token_accuracy_before"]
    assert metrics["loss_after"] != metrics["loss_before"]        # the trained model is scored after
    assert 0 < metrics["loss_before"] < 2 * math.log(4096)        # a real cross-entropy over a 4k vocabulary
    kept = record["retention"]
    assert kept["measurable"] is True and kept["corpus"] == "stdlib" and kept["python"] == platform.python_version()
    assert Path(kept["root"]) == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert kept["tokens"] == 2048 and kept["files"] >= 1 and len(kept["digest"]) == 16
    assert kept["windows"] == kept["files"] > 1 and kept["scored_as"] == "next token"  # one window per file
    # the base is the same loaded model whatever the training seed: the same tokens give the same loss
    other = cells["on1"][1]["retention"]
    assert other["loss_before"] == kept["loss_before"] and other["digest"] == kept["digest"]


def test_retention_leaves_training_unchanged_and_null_adds_nothing(cells):
    on, off = cells["on0"][1], cells["off0"][1]
    assert off["retention"] is None and not [k for k in off["metrics"] if k.startswith("retention")]
    assert {k: v for k, v in on["metrics"].items() if not k.startswith("retention")} == off["metrics"]


def test_retention_is_recorded_in_mlflow(cells):
    from mlflow import MlflowClient

    result, record = cells["on0"]
    found = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(result.mlflow_run_id).data
    for key in SCORES:
        assert found.metrics[f"retention.{key}"] == pytest.approx(record["metrics"][f"retention.{key}"])
    assert found.tags["retention.corpus"] == "stdlib" and found.tags["retention.digest"] == record["retention"]["digest"]
    assert found.tags["retention.files"] == str(record["retention"]["files"])


def test_leaderboard_shows_forgetting(cells):
    board = build(from_runs_dir(cells["board"]))
    mean = sum(cells[c][1]["metrics"]["retention.delta_loss"] for c in ("on0", "on1")) / 2
    entry = board.rows[("tiny_llama", "lora")]["code_corpus"]
    assert entry.cost["retention.delta_loss"] == pytest.approx(mean)
    assert "forgetting (Δ loss)" in RENDERERS["md"](board) and f"{mean:+.3g}" in RENDERERS["md"](board)
    rows = RENDERERS["csv"](board).splitlines()
    assert float(rows[1].split(",")[rows[0].split(",").index("retention.delta_loss")]) == pytest.approx(mean)
    shown = json.loads(RENDERERS["json"](board))["rows"][0]["code_corpus"]["cost"]["retention.delta_loss"]
    assert shown == pytest.approx(mean)
    page = RENDERERS["html"](board)
    assert "forgetting: retention loss after - before" in page and page.count("Pareto front") >= 3


def test_a_directory_corpus_scores_its_held_out_files(in_tmp):
    repo = in_tmp / "repo"
    (repo / "pkg").mkdir(parents=True)
    for i in range(12):
        (repo / "pkg" / f"m{i}.py").write_text("".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n\n"
                                                       for j in range(20)))
    cfg = compose([*CORPUS_CELL, "tracker=none", f"trainer.retention={repo}", "trainer.retention_max_tokens=512"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    held_out = instantiate(compose(["task=code_corpus", f"task.data_dir={repo}", "task.include=[**/*.py]"]).task,
                           _convert_="all").load_splits()["test"]
    kept = result.retention
    assert kept["corpus"] == str(repo) and kept["root"] == str(repo.resolve())
    assert kept["held_out_files"] == len(held_out) and 1 <= kept["files"] <= len(held_out)
    assert kept["tokens"] <= 512 and math.isfinite(result.metrics["retention.delta_loss"])


def test_seq2seq_scores_the_second_half_of_each_window(in_tmp):
    cfg = compose(["task=concode", "model=tiny_t5", "trainer=smoke", "tracker=none", "trainer.retention=stdlib",
                   "trainer.retention_max_tokens=1024"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.retention["scored_as"].startswith("second half")
    assert all(math.isfinite(result.metrics[f"retention.{k}"]) for k in SCORES)


def test_a_classification_head_is_recorded_as_not_measurable(in_tmp):
    cfg = compose(["task=defect", "model=tiny_llama", "trainer=smoke", "tracker=none", "trainer.retention=stdlib"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    record = json.loads((in_tmp / "cell" / "result.json").read_text())["retention"]
    assert record["measurable"] is False and "sequence_classification head" in record["reason"]
    assert not [k for k in result.metrics if k.startswith("retention")]


@pytest.mark.parametrize("value", ["/no/such/dir", "stdlbi"])
def test_a_bad_value_fails_before_loading(value):
    with pytest.raises(ConfigError) as err:
        check(compose([f"trainer.retention={value}"]))
    assert str(err.value) == (f"config error: trainer.retention='{value}': must be null, stdlib or an existing "
                              "directory of source files")


def test_a_bad_value_exits_with_one_line():
    done = subprocess.run(harness_cmd("trainer=smoke", "tracker=none", "trainer.retention=stdlbi"), cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "config error: trainer.retention='stdlbi': must be null, stdlib" in done.stderr + done.stdout


def test_retention_off_hashes_as_before_the_keys_existed():
    """With trainer.retention=null its settings change nothing a cell computes, so finished cells
    recorded before the keys existed are still found (skipped, resumed) by their hash."""
    from harness.config import config_hash

    plain = config_hash(compose([]))
    assert config_hash(compose(["trainer.retention_max_tokens=64"])) == plain
    assert config_hash(compose(["trainer.retention=stdlib"])) != plain
    assert (config_hash(compose(["trainer.retention=stdlib", "trainer.retention_max_tokens=64"]))
            != config_hash(compose(["trainer.retention=stdlib"])))
