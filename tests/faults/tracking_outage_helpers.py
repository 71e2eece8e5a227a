"""For the tracking-outage tests: a loopback MLflow server that a test kills (SIGKILL, the whole process
group: a crash, not a shutdown) and brings back on the same store, and a tracker that kills it at a
chosen moment of a real cell. The cell's own process imports this module (PYTHONPATH)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.tracking import MlflowTracker

HERE = Path(__file__).resolve().parent


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def wait_refused(port: int, seconds: float = 30.0) -> None:
    deadline = time.time() + seconds
    while not refused(port):
        if time.time() > deadline:
            raise RuntimeError(f"port {port} still answers {seconds:g} s after its server was killed")
        time.sleep(0.05)


class Server:
    """`mlflow server` on 127.0.0.1 (one worker, no job runner) over a sqlite file and an artifact folder."""

    def __init__(self, root: Path, port: int | None = None):
        from conftest import free_port  # the tests' process only; the cell imports this module without it

        self.root, self.port = Path(root), port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, seconds: float = 240.0) -> Server:
        from conftest import subprocess_env

        env = {**subprocess_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root}/server.db",
             "--artifacts-destination", str(self.root / "server-artifacts")],
            cwd=self.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + seconds
        while time.time() < deadline:
            assert self.proc.poll() is None, "the MLflow server exited at its start"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the MLflow server on port {self.port} did not answer within {seconds:g} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        wait_refused(self.port)


class KillingTracker(MlflowTracker):
    """The real MlflowTracker, whose server is killed (process group `kill_pgid`) at `kill_when`:
    `stepN` just before the train loss of step N is logged, or `end` just before the run is ended."""

    def __init__(self, *args, kill_pgid: int, kill_port: int, kill_when: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kill_pgid, self.kill_port, self.kill_when = int(kill_pgid), int(kill_port), str(kill_when)

    def _kill(self) -> None:
        print(f"[test] killing the MLflow server (process group {self.kill_pgid}) at {self.kill_when}", flush=True)
        try:
            os.killpg(self.kill_pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_refused(self.kill_port)

    def log_metrics(self, metrics, step=None):
        if self.kill_when == f"step{step}" and "train_loss" in metrics:
            self._kill()
        super().log_metrics(metrics, step)

    def end(self, status):
        if self.kill_when == "end":
            self._kill()
        super().end(status)


def killing_overrides(server: Server, when: str) -> list[str]:
    return [f"tracker.uri={server.uri}", "tracker._target_=tracking_outage_helpers.KillingTracker",
            f"+tracker.kill_pgid={server.proc.pid}", f"+tracker.kill_port={server.port}", f"+tracker.kill_when={when}"]


def cell_env() -> dict[str, str]:
    """The environment of a cell's process: this folder importable, the session's MLflow URI left out."""
    from conftest import subprocess_env

    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env
