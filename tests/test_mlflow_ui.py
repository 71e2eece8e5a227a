"""The MLflow UI, in a real headless browser, shows the runs of a small real sweep and compares them."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port, harness_cmd, subprocess_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
SHOTS = ROOT / "runs" / "e2e"


def _browse(url: str, tmp: Path, shot: str) -> str:
    """Render a page like a person would see it: the DOM after scripts ran, and a screenshot."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw",
             "--window-size=1400,1400"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run([*flags, f"--user-data-dir={tmp / (shot + '-a')}", f"--screenshot={SHOTS / shot}.png", url],
                   capture_output=True, timeout=120)
    dom = subprocess.run([*flags, f"--user-data-dir={tmp / (shot + '-b')}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    return dom.stdout


def test_runs_and_compare_pages_show_the_sweep(in_tmp):
    sweep = subprocess.run(harness_cmd("-m", "model=tiny_bert", "trainer=smoke", "method=lora,full"),
                           cwd=in_tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    from mlflow import MlflowClient

    store = f"sqlite:///{in_tmp}/runs/mlflow.db"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("codexglue").experiment_id
    cells = [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" in r.data.tags]
    port = free_port()
    ui = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", store,
                           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                          cwd=in_tmp, env=subprocess_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        runs_page = _browse(f"{base}/#/experiments/{experiment}/runs", in_tmp, "runs_page")
        assert "sweep " in runs_page and "<strong>3</strong> matching runs" in runs_page
        ids = ",".join(f'"{c.info.run_id}"' for c in cells)
        compare = _browse(f'{base}/#/compare-runs?runs=[{ids}]&experiments=["{experiment}"]', in_tmp, "compare_page")
        for cell in cells:
            assert cell.info.run_name in compare
        for metric in (">f1<", ">precision<", ">train_loss<"):
            assert metric in compare
        assert (SHOTS / "compare_page.png").stat().st_size > 10_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
