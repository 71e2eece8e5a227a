"""tracker=mlflow_server: a team's MLflow server, PostgreSQL behind it, artifacts on a shared path.

Two sweeps sent to one server at once (as two people would) record every cell once, each under its
own sweep's parent run, with its loss curve, scores and files readable through the server and
stored under the server's --artifacts-destination; a cell running on another host is left alone
while its heartbeat is fresh and taken over once it is stale; a password in the URI is never recorded.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import compose, harness_cmd, subprocess_env
from faults.test_liveness import _machine, _runs_of, assert_one_holder_per_cell
from harness import liveness
from harness.config import flatten, to_container
from harness.redact import redact
from servers import MlflowServer, Postgres, postgres_bin

SMOKE = ("model=tiny_bert", "trainer=smoke")
SWEEPS = {"a": (0, 1, 2), "b": (1, 2, 3)}  # seeds 1 and 2 in both: one of the two trains each
NO_POSTGRES = ("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
               "`make postgres` installs Debian's postgresql")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """PostgreSQL and `mlflow server` on it (one worker), artifacts in a "shared" directory."""
    if postgres_bin() is None:
        pytest.skip(NO_POSTGRES)
    import mlflow

    root = tmp_path_factory.mktemp("team")
    with Postgres() as pg, MlflowServer(pg, root / "shared" / "mlartifacts", root / "mlflow-server.log",
                                        subprocess_env()) as srv:
        yield srv
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # in-process cells pointed MLflow at the server


def test_mlflow_server_tracker_takes_the_team_uri_from_the_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = compose(["tracker=mlflow_server"]).tracker
    assert tracker._target_ == "harness.tracking.MlflowTracker" and tracker.uri == "http://127.0.0.1:5000"
    assert tracker.heartbeat_timeout == 600 and tracker.store_retries == 8  # tracker=mlflow's liveness settings
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team.example:5000")
    assert compose(["tracker=mlflow_server"]).tracker.uri == "http://mlflow.team.example:5000"


def test_a_password_in_the_tracker_uri_is_masked_in_params_and_config():
    for password in ("pw", "longer-password-42"):  # masked whatever its length
        cfg = compose(["tracker=mlflow_server", f"tracker.uri=http://team:{password}@mlflow.team.example:5000"])
        recorded = redact(to_container(cfg))  # what run.py writes (config.yaml) and logs (params)
        assert flatten(recorded)["tracker.uri"] == "http://team:***@mlflow.team.example:5000"
        assert password not in json.dumps(recorded)


def _sweep(name: str, seeds: tuple[int, ...], cwd: Path, env: dict[str, str], uri: str | None):
    """`python -m harness -m seed=... tracker=mlflow_server` in its own directory (its own machine)."""
    cwd.mkdir()
    args = harness_cmd("-m", *SMOKE, f"seed={','.join(map(str, seeds))}", "tracker=mlflow_server",
                       *([f"tracker.uri={uri}"] if uri else []), f"hydra.sweep.dir=runs/multirun/{name}")
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_sweeps_at_once_record_each_cell_once_on_the_team_server(server, tmp_path):
    from mlflow import MlflowClient

    password = f"pw-{secrets.token_hex(8)}"
    host = server.uri.removeprefix("http://")
    env_uri = {**subprocess_env(), "MLFLOW_TRACKING_URI": server.uri}  # sweep a: the documented variable
    procs = {"a": _sweep("a", SWEEPS["a"], tmp_path / "a", env_uri, None),  # sweep b: a URI with a password
             "b": _sweep("b", SWEEPS["b"], tmp_path / "b", subprocess_env(), f"http://team:{password}@{host}")}
    outs = {name: p.communicate(timeout=600)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"sweep {name}:\n{outs[name][-4000:]}"

    sweep_dirs = {name: tmp_path / name / "runs" / "multirun" / name for name in SWEEPS}
    results = {name: [{**json.loads(p.read_text()), "out_dir": p.parent} for p in d.glob("*/result.json")]
               for name, d in sweep_dirs.items()}
    assert {name: sorted(r["seed"] for r in rs) for name, rs in results.items()} == {
        name: sorted(seeds) for name, seeds in SWEEPS.items()}
    trained = [(name, r) for name, rs in results.items() for r in rs if r["status"] == "FINISHED"]
    assert Counter(r["seed"] for _, r in trained) == Counter({0: 1, 1: 1, 2: 1, 3: 1})  # each cell once
    for r in (r for rs in results.values() for r in rs if r["status"] != "FINISHED"):
        assert r["status"] == "SKIPPED" and r["reason"].startswith(
            ("already FINISHED as MLflow run", "running elsewhere (host ")), r["reason"]
    assert all(r["tracking"]["held"] for _, r in trained), [r["tracking"] for _, r in trained]

    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("codexglue")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's store, not a local path
    parents = {name: client.get_run((d / "parent_run_id").read_text().strip()) for name, d in sweep_dirs.items()}
    assert all(p.info.status == "FINISHED" and "mlflow.parentRunId" not in p.data.tags for p in parents.values())
    a, b = parents["a"].info, parents["b"].info
    assert a.start_time < b.end_time and b.start_time < a.end_time  # the sweeps did run at the same time

    hashes = {r["config_hash"] for _, r in trained}
    cells = [run for run in client.search_runs([experiment.experiment_id], max_results=500)
             if run.data.tags.get("config_hash") in hashes]
    assert sorted(run.info.run_id for run in cells) == sorted(r["mlflow_run_id"] for _, r in trained)  # no duplicate
    for name, r in trained:
        _check_cell(client, client.get_run(r["mlflow_run_id"]), r, parents[name].info.run_id, server.artifacts)
    for config_hash in hashes:  # every cell lock given back
        assert client.search_model_versions(
            f"name = '{liveness.LOCKS_MODEL}' AND tags.config_hash = '{config_hash}'") == []

    _check_password_unrecorded(password, [*parents.values(), *cells], server.artifacts, tmp_path / "b")
    assert any(run.data.params["tracker.uri"] == f"http://team:***@{host}" for run in cells)  # sweep b's cells


def _check_cell(client, run, result: dict, parent_id: str, shared: Path) -> None:
    """One cell's run on the server: its sweep's child, FINISHED, its loss curve and score, its files."""
    rid, out_dir = run.info.run_id, result["out_dir"]
    assert run.info.status == "FINISHED" and run.data.tags["harness.status"] == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent_id
    losses = client.get_metric_history(rid, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, result["cost"]["train_steps"] + 1)) == [1, 2, 3]
    assert run.data.metrics[result["primary_metric"]] == result["primary_value"]

    listed = {a.path for a in client.list_artifacts(rid)}
    assert {"config.yaml", "result.json", "predictions", "adapter"} <= listed, listed
    predictions = {a.path for a in client.list_artifacts(rid, "predictions")}
    assert predictions == {f"predictions/{Path(f).name}" for f in result["files"].values()}
    assert {a.path for a in client.list_artifacts(rid, "adapter")} >= {"adapter/adapter_config.json"}

    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # uploaded through the server
    stored = shared / run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    for rel in ("config.yaml", "adapter/adapter_config.json", *sorted(predictions)):
        assert (stored / rel).read_bytes() == (out_dir / rel).read_bytes(), rel  # on the shared path, whole
    fetched = Path(client.download_artifacts(rid, "predictions", str(out_dir.parent / f"fetched-{rid}")))
    assert {p.name: p.read_bytes() for p in fetched.iterdir()} == {
        p.name: p.read_bytes() for p in (out_dir / "predictions").iterdir()}


def _check_password_unrecorded(password: str, runs: list, shared: Path, machine: Path) -> None:
    for run in runs:
        recorded = json.dumps([run.data.params, run.data.tags, run.info.run_name])
        assert password not in recorded, f"password recorded in run {run.info.run_id}"
    stored = [p for p in shared.rglob("*") if p.is_file()]
    written = [p for p in machine.rglob("*") if p.is_file() and p.name in ("config.yaml", "config.json", "result.json")
               and ".hydra" not in p.parts]  # Hydra's own copy of the command line is Hydra's (see README)
    assert stored and written
    for path in [*stored, *written]:
        assert password.encode() not in path.read_bytes(), f"password recorded in {path}"


@pytest.mark.slow
def test_a_cell_running_on_another_host_is_skipped_until_its_heartbeat_is_stale(server, in_tmp):
    from mlflow import MlflowClient

    from harness.run import run

    cell = [*SMOKE, "seed=1301", "tracker=mlflow_server", f"tracker.uri={server.uri}", "tracker.heartbeat_timeout=60"]
    first = run(compose(cell), in_tmp / "a")
    assert first.status == "FINISHED", first.reason
    client = MlflowClient(server.uri)
    # The same run as a machine that died mid-cell left it: RUNNING, tagged by its host, last beat 5 s ago.
    client.update_run(first.mlflow_run_id, status="RUNNING")
    client.delete_tag(first.mlflow_run_id, "harness.status")
    for key, value in {**_machine("gpu-node-7.example"), liveness.HEARTBEAT_TAG: f"{time.time() - 5:.0f}"}.items():
        client.set_tag(first.mlflow_run_id, key, value)

    busy = run(compose(cell), in_tmp / "b")
    assert busy.status == "SKIPPED"
    assert busy.reason.startswith("running elsewhere (host gpu-node-7.example, pid 4242, heartbeat "), busy.reason
    assert "tracker.heartbeat_timeout=60 s" in busy.reason
    left = client.get_run(first.mlflow_run_id)
    assert left.info.status == "RUNNING" and left.data.tags["harness.host"] == "gpu-node-7.example"

    client.set_tag(first.mlflow_run_id, liveness.HEARTBEAT_TAG, f"{time.time() - 120:.0f}")  # past the timeout
    taken = run(compose(cell), in_tmp / "c")
    assert taken.status == "FINISHED", taken.reason
    assert taken.mlflow_run_id == first.mlflow_run_id  # resumed, not a second run
    now = client.get_run(first.mlflow_run_id)
    assert now.info.status == "FINISHED" and now.data.tags["harness.resumed"] == "true"
    assert now.data.tags["harness.host"] == liveness.host()  # this machine (platform.node(), or $HARNESS_HOST)
    assert [m.step for m in client.get_metric_history(first.mlflow_run_id, "train_loss")] == [1, 2, 3]  # once each
    assert len(_runs_of(client, first.config_hash)) == 1
    assert client.search_model_versions(
        f"name = '{liveness.LOCKS_MODEL}' AND tags.config_hash = '{first.config_hash}'") == []


@pytest.mark.slow
def test_simultaneous_claims_through_the_server_have_one_winner(server, in_tmp):
    """Four processes claim three cells at the same instants through the server (PostgreSQL numbers
    the lock tickets): each cell has exactly one holder."""
    assert_one_holder_per_cell(server.uri, in_tmp)
