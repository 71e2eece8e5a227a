"""Liveness across machines: heartbeats, takeover only after the heartbeat timeout, one lock per
cell in the tracking store (sqlite file and tracking server), retries on a locked sqlite store."""
from __future__ import annotations

import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import compose, free_port, harness_cmd, subprocess_env
from harness import liveness
from harness.run import run
from harness.tracking import MlflowTracker

SMOKE = ("model=tiny_bert", "trainer=smoke")


def _client(uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(uri or os.environ["MLFLOW_TRACKING_URI"])


def _machine(name: str, pid: str = "4242") -> dict[str, str]:
    return {"harness.host": name, "harness.pid": pid}


def _runs_of(client, config_hash: str):
    experiment = client.get_experiment_by_name("codexglue").experiment_id
    return client.search_runs([experiment], f"tags.config_hash = '{config_hash}'")


def test_running_elsewhere_is_skipped_while_its_heartbeat_is_fresh_and_resumed_once_stale(in_tmp):
    first = run(compose([*SMOKE, "seed=1301"]), in_tmp / "a")
    assert first.status == "FINISHED", first.reason
    client = _client()
    # The same run, as a process on another machine left it: RUNNING, with a heartbeat 5 s old.
    client.update_run(first.mlflow_run_id, status="RUNNING")
    client.delete_tag(first.mlflow_run_id, "harness.status")
    for key, value in {**_machine("machine-b.example"), liveness.HEARTBEAT_TAG: f"{time.time() - 5:.0f}"}.items():
        client.set_tag(first.mlflow_run_id, key, value)

    busy = run(compose([*SMOKE, "seed=1301", "tracker.heartbeat_timeout=60"]), in_tmp / "b")
    assert busy.status == "SKIPPED"
    assert "running elsewhere (host machine-b.example, pid 4242, heartbeat " in busy.reason
    assert "tracker.heartbeat_timeout=60 s" in busy.reason
    left = client.get_run(first.mlflow_run_id)
    assert left.info.status == "RUNNING" and left.data.tags["harness.host"] == "machine-b.example"

    client.set_tag(first.mlflow_run_id, liveness.HEARTBEAT_TAG, f"{time.time() - 120:.0f}")  # past the timeout
    taken = run(compose([*SMOKE, "seed=1301", "tracker.heartbeat_timeout=60"]), in_tmp / "c")
    assert taken.status == "FINISHED", taken.reason
    assert taken.mlflow_run_id == first.mlflow_run_id  # resumed, not a second run
    run_now = client.get_run(first.mlflow_run_id)
    assert run_now.info.status == "FINISHED" and run_now.data.tags["harness.resumed"] == "true"
    assert run_now.data.tags["harness.host"] == platform.node()
    assert "tracker.heartbeat_timeout: 600 -> 60" in run_now.data.tags["harness.resumed_params_changed"]
    assert len(_runs_of(client, first.config_hash)) == 1
    assert not [t for t in threading.enumerate() if t.name == "harness-heartbeat"]  # stopped with each cell


def test_cell_lock_has_one_holder_until_released_or_stale(capsys):
    client = liveness.RetryingClient(_client(), 3)
    a = liveness.CellLock(client, "lock-cell-1", timeout=60, who=_machine("machine-a", "11"))
    b = liveness.CellLock(client, "lock-cell-1", timeout=60, who=_machine("machine-b", "22"))
    other = liveness.CellLock(client, "lock-cell-2", timeout=60, who=_machine("machine-b", "22"))
    assert a.acquire() is None
    reason = b.acquire()
    assert reason.startswith("running elsewhere (host machine-a, pid 11, heartbeat ")
    assert "lock ticket " in reason and "tracker.heartbeat_timeout=60 s" in reason
    assert b.version is None and other.acquire() is None  # a lock is per cell
    a.release()
    assert b.acquire() is None  # free once released
    # b's machine stops beating: past the timeout, c takes over, deletes b's ticket, and b learns it.
    client.set_model_version_tag(liveness.LOCKS_MODEL, b.version, liveness.HEARTBEAT_TAG, f"{time.time() - 61:.0f}")
    c = liveness.CellLock(client, "lock-cell-1", timeout=60, who=_machine("machine-c", "33"))
    assert c.acquire() is None
    b.refresh()
    assert b.lost and "lost the lock on cell lock-cell-1" in capsys.readouterr().out
    tickets = client.search_model_versions(f"name = '{liveness.LOCKS_MODEL}' AND tags.config_hash = 'lock-cell-1'")
    assert [t.version for t in tickets] == [c.version]
    c.release()
    other.release()


RACE = """
import json, sys, time
from harness.tracking import MlflowTracker
tracker = MlflowTracker(sys.argv[1], "codexglue", "runs/mlartifacts")
tracker.previous("warm-up")  # four processes create the store's tables at once
out = []
for i, at in enumerate(json.loads(sys.argv[2])):
    time.sleep(max(0.0, at - time.time()))
    out.append(tracker.claim(f"race-cell-{i}") is None)
    tracker._lock = None  # keep holding: the ticket stays live while this process runs
print(json.dumps(out), flush=True)
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
"""


@pytest.mark.slow
def test_simultaneous_claims_on_one_sqlite_store_have_one_winner(in_tmp):
    """Four processes on this machine, on a store none has created yet, claim three cells at the
    same instants: each cell has exactly one holder."""
    assert_one_holder_per_cell(f"sqlite:///{in_tmp}/runs/mlflow.db", in_tmp)


def assert_one_holder_per_cell(uri: str, cwd) -> None:
    """Four processes claim three cells in the store at `uri` at the same instants (RACE): each
    cell has exactly one holder."""
    start = time.time() + 25  # after every process has imported MLflow
    instants = [start, start + 2, start + 4]
    procs = [subprocess.Popen([sys.executable, "-c", RACE, uri, json.dumps(instants), str(start + 10)],
                              cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    held = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [sum(h[i] for h in held) for i in range(3)] == [1, 1, 1], held


def test_heartbeat_must_be_shorter_than_its_timeout():
    with pytest.raises(ValueError, match="heartbeat_interval=600 must be above 0 and below"):
        MlflowTracker("sqlite:///x.db", "codexglue", "runs/mlartifacts", heartbeat_interval=600, heartbeat_timeout=60)


@pytest.mark.slow
def test_heartbeat_advances_while_a_cell_runs_and_lock_is_released_at_the_end(in_tmp):
    proc = subprocess.Popen(harness_cmd(*SMOKE, "trainer.max_steps=100000", "trainer.max_train_examples=64",
                                        "trainer.log_every=1000", "tracker.heartbeat_interval=0.5"),
                            cwd=in_tmp, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            # a shell's background job ignores SIGINT, and the child would inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    uri = f"sqlite:///{in_tmp}/runs/mlflow.db"
    try:
        beats = _heartbeats(proc, uri, until=time.time() + 240)
        assert len(set(beats)) >= 3 and beats == sorted(beats), beats  # advancing while RUNNING
        tickets = _client(uri).search_model_versions(f"name = '{liveness.LOCKS_MODEL}'")
        assert len(tickets) == 1 and tickets[0].tags["harness.pid"] == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)  # the cell ends (KILLED or FAILED); heartbeat and lock stop with it
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()  # never left running, training for ever, after a failure
            raise
    client = _client(uri)
    [run_] = client.search_runs([client.get_experiment_by_name("codexglue").experiment_id])
    assert run_.info.status != "RUNNING"
    assert client.search_model_versions(f"name = '{liveness.LOCKS_MODEL}'") == []


def _heartbeats(proc, uri: str, until: float) -> list[float]:
    """The heartbeat tag of the subprocess's RUNNING run, read every 0.5 s: five distinct values.
    Read with sqlite3 in read-only mode: an MlflowClient here could race the cell's own creation of
    the store's tables (its migrations), which the harness guards with a file lock this test lacks."""
    import sqlite3

    beats: list[float] = []
    path = Path(uri.removeprefix("sqlite:///"))
    while len(set(beats)) < 5 and time.time() < until:
        assert proc.poll() is None, "the cell ended before its heartbeat was seen to advance"
        time.sleep(0.5)
        if not path.exists():
            continue
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
                found = db.execute("SELECT t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                                   "WHERE r.status = 'RUNNING' AND t.key = ?", (liveness.HEARTBEAT_TAG,)).fetchall()
        except sqlite3.Error:  # the store is still being created by the cell
            continue
        if found:
            beats.append(float(found[0][0]))
    return beats


@pytest.mark.slow
def test_a_locked_sqlite_store_is_retried_with_backoff(in_tmp, capsys):
    """Another connection holds the database EXCLUSIVE for longer than sqlite's busy timeout (20 s,
    set by MLflow): the call fails "database is locked", is retried after a backoff, and succeeds."""
    db = in_tmp / "locked.db"
    tracker = MlflowTracker(f"sqlite:///{db}", "codexglue", "runs/mlartifacts", store_retries=8)
    tracker.previous("nothing")  # creates the store
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)  # released by a timer thread
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(24, holder.execute, ("COMMIT",))
    release.start()
    try:
        started = time.time()
        assert tracker.previous("nothing").finished is None
        assert time.time() - started > 20
    finally:
        release.join()
        holder.close()
    assert "tracking store locked (search_runs); retry 1/7" in capsys.readouterr().out


def test_retries_are_bounded_and_only_for_a_locked_store():
    from sqlalchemy.exc import OperationalError

    calls = []

    def flaky(fail: int, err: Exception):
        calls.append(1)
        if len(calls) <= fail:
            raise err
        return "done"

    locked = OperationalError("INSERT", {}, Exception("database is locked"))
    assert liveness.with_retries(flaky, 4, base=0.01)(2, locked) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(OperationalError):
        liveness.with_retries(flaky, 3, base=0.01)(5, locked)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ValueError):
        liveness.with_retries(flaky, 3, base=0.01)(5, ValueError("no such column"))
    assert len(calls) == 1


@pytest.mark.slow
def test_cell_lock_holds_across_machines_through_a_tracking_server(in_tmp):
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{in_tmp}/server.db",
         "--artifacts-destination", str(in_tmp / "server-artifacts")],
        cwd=in_tmp, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_for(port)
        client = _client(f"http://127.0.0.1:{port}")
        a = liveness.CellLock(client, "served-cell", timeout=60, who=_machine("machine-a", "11"))
        b = liveness.CellLock(client, "served-cell", timeout=60, who=_machine("machine-b", "22"))
        assert a.acquire() is None
        assert "running elsewhere (host machine-a, pid 11" in b.acquire()
        a.refresh()
        client.set_model_version_tag(liveness.LOCKS_MODEL, a.version, liveness.HEARTBEAT_TAG, f"{time.time() - 61:.0f}")
        assert b.acquire() is None  # a's heartbeat is past the timeout: b takes over
        a.refresh()
        assert a.lost
        b.release()
        assert client.search_model_versions(f"name = '{liveness.LOCKS_MODEL}'") == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _wait_for(port: int, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no tracking server on port {port} after {seconds} s")
