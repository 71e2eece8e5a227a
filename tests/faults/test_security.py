"""Security: names from configs and runs are escaped on every page the harness renders; secrets are
never recorded; trust_remote_code is off unless a model YAML turns it on (and tagged); weights load
from safetensors only; servers the harness starts or tells you to start listen on 127.0.0.1."""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, compose, harness_cmd, subprocess_env
from harness import provenance
from harness.env import pick_device
from harness.leaderboard import main as leaderboard
from harness.models import load_model, load_tokenizer, materialize, safe_loading
from harness.redact import MASK, redact, secret_values
from harness.outbox import describe
from harness.report import UI_HINT, cell_summary
from harness.sync import Sync

HF_TOKEN, API_KEY = "hf_secret123abc", "sk-live-abc123xyz"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory) -> Path:
    """One real cell, tracked in MLflow, with secrets in the environment, one of them resolved into a
    config value by an override, and a model named like an attack."""
    root = tmp_path_factory.mktemp("secret_run")
    env = {**subprocess_env(), "HF_TOKEN": HF_TOKEN, "MY_API_KEY": API_KEY}
    proc = subprocess.run(harness_cmd("model=tiny_bert", "trainer=smoke", "trainer.max_steps=1",
                                      f"model.name='{SCRIPT}'", "+trainer.note=key-${oc.env:MY_API_KEY}-end",
                                      "+model.token=${oc.env:HF_TOKEN}", "hydra.run.dir=runs/outputs/cell"),
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root


def _store(root: Path, table: str) -> dict[str, str]:
    with sqlite3.connect(root / "runs" / "mlflow.db") as db:
        return dict(db.execute(f"SELECT key, value FROM {table}").fetchall())  # noqa: S608 -- fixed names


def test_no_secret_is_recorded_anywhere(secret_run):
    files = [p for p in secret_run.rglob("*") if p.is_file()]
    assert any(p.name == "result.json" for p in files) and any(p.name == "mlflow.db" for p in files)
    assert any("mlartifacts" in p.parts and p.name == "config.yaml" for p in files)  # the config artifact
    for path in files:  # the run dir, the MLflow store (params, tags) and its artifacts
        data = path.read_bytes()
        for secret in (HF_TOKEN, API_KEY):
            assert secret.encode() not in data, f"{secret} recorded in {path.relative_to(secret_run)}"
    params = _store(secret_run, "params")
    assert params["trainer.note"] == f"key-{MASK}-end" and params["model.token"] == MASK
    assert "note: key-***-end" in (secret_run / "runs" / "outputs" / "cell" / "config.yaml").read_text()


def test_runs_are_tagged_with_trust_remote_code(secret_run):
    assert _store(secret_run, "tags")["harness.trust_remote_code"] == "false"


def test_html_leaderboard_shows_a_script_name_as_text(secret_run, tmp_path):
    for fmt in ("html", "md"):
        out = tmp_path / f"board.{fmt}"
        runs = secret_run / "runs" / "outputs"
        assert leaderboard(["--runs-dir", str(runs), "--format", fmt, "--out", str(out)]) == 0
        text = out.read_text()
        assert "<script>alert" not in text and "<script" not in text.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the table cell, and the plot labels' SVG text
    assert re.search(r"<td>&lt;script&gt;alert\(1\)&lt;/script&gt;</td>", (tmp_path / "board.html").read_text())


def test_redact_masks_secret_values_wherever_they_appear():
    secrets = secret_values({"HF_TOKEN": HF_TOKEN, "MY_API_KEY": API_KEY, "DB_PASSWORD": "hunter22",
                             "AWS_SECRET_ACCESS_KEY": "AKIAxyz123", "TOKENIZERS_PARALLELISM": "false",
                             "HOME": "/home/someone-long"})
    assert {HF_TOKEN, API_KEY, "hunter22", "AKIAxyz123"} <= set(secrets)
    assert "false" not in secrets and "/home/someone-long" not in secrets  # short, or not a secret's name
    record = {"uri": f"http://u:{API_KEY}@host", f"k{HF_TOKEN}": [HF_TOKEN, ("x", 1)], "n": 3, "none": None}
    assert redact(record, secrets) == {"uri": f"http://u:{MASK}@host", f"k{MASK}": [MASK, ("x", 1)], "n": 3,
                                       "none": None}


def test_trust_remote_code_is_off_unless_the_model_yaml_turns_it_on():
    assert safe_loading(compose([]).model) == {"use_safetensors": True, "trust_remote_code": False}
    assert provenance.trust_tags(compose([]).model) == {"harness.trust_remote_code": "false"}
    on = compose(["+model.trust_remote_code=true"]).model
    assert safe_loading(on)["trust_remote_code"] is True
    assert provenance.trust_tags(on) == {"harness.trust_remote_code": "true"}


def test_weights_load_from_safetensors_only(tmp_path):
    """The same weights as a pickle (pytorch_model.bin) are refused: unpickling can run code."""
    import torch
    from safetensors.torch import load_file

    cfg = compose(["model=tiny_bert", "method=lora"])
    built = Path(materialize(cfg.model, load_tokenizer(cfg.model)))
    pickled = tmp_path / "pickled"
    shutil.copytree(built, pickled)
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    os.remove(pickled / "model.safetensors")
    cfg.model.path = str(pickled)
    with pytest.raises(OSError, match="safetensors"):
        load_model(cfg.model, cfg.method, "sequence_classification", pick_device("cpu"), {"num_labels": 2})
    cfg.model.path = str(built)
    load_model(cfg.model, cfg.method, "sequence_classification", pick_device("cpu"), {"num_labels": 2})


def test_a_password_in_the_tracking_uri_is_masked_in_the_journal_and_on_the_console(tmp_path):
    tracker = SimpleNamespace(uri="postgresql+psycopg2://me:hunter22xx@db:5432/mlflow")
    assert describe(tracker)["uri"] == f"postgresql+psycopg2://me:{MASK}@db:5432/mlflow"  # the journal header
    result = {"task": "t", "model": "m", "method": "lora", "seed": 1, "status": "FAILED", "reason": "x",
              "mlflow_run_id": "abc"}
    summary = cell_summary(result, "http://me:hunter22xx@server:5000/", "out")
    assert "hunter22xx" not in summary and f"http://me:{MASK}@server:5000/#/experiments" in summary
    with pytest.raises(ValueError, match="masked"):  # sync asks for the URI rather than failing to log in
        Sync(tmp_path).store(SimpleNamespace(header={"tracker": describe(tracker)}))


def test_servers_listen_on_loopback():
    """Every MLflow server command the harness prints or documents binds 127.0.0.1, except the team
    server of tracker=mlflow_server, which the README documents for a trusted network only."""
    assert "--host 127.0.0.1" in UI_HINT
    sources = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "harness").rglob("*.py")),
               *sorted((ROOT / "bench").glob("*.py"))]
    commands = [(path.name, line) for path in sources if path.exists()
                for line in path.read_text().splitlines() if re.search(r"mlflow (ui|server) (-|\{)", line)]
    assert commands, "expected the README's mlflow ui commands"
    for name, line in commands:
        if "--backend-store-uri postgresql" in line and name == "README.md":
            assert "--host 0.0.0.0" in line and "trusted network" in (ROOT / "README.md").read_text()
            continue
        assert "--host 127.0.0.1" in line, f"{name}: {line.strip()}"
