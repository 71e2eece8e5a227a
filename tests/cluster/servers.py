"""A throwaway PostgreSQL and an MLflow tracking server on it, for the tracking-server tests.

PostgreSQL runs from its own binaries (initdb, pg_ctl: on PATH or Debian's /usr/lib/postgresql/<v>/bin)
in a fresh data directory, on 127.0.0.1 and a free port, with password authentication; it refuses
to run as root, so as root it runs as the `postgres` user (or `nobody`) in a directory that user owns.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from conftest import free_port

DB_USER, DB_NAME = "harness", "mlflow"


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (PATH first, then the newest Debian version), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name))
    return next((d for d in reversed(versions) if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def _version(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in name.split("."))


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


class Postgres:
    """`with Postgres() as pg:` a running server holding an empty database `mlflow`; stopped and
    deleted on exit."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin")
        self.port, self.password = free_port(), secrets.token_hex(12)
        self.user = None if os.geteuid() != 0 else next(
            (u for u in ("postgres", "nobody") if _has_user(u)), None)
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # /tmp: the unprivileged user can reach it
        self.data, self.log = self.root / "data", self.root / "postgres.log"

    def _pg(self, *args: str) -> None:
        who = {} if self.user is None else {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid,
                                            "extra_groups": []}
        proc = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                              cwd=self.root, **who)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}\n"
                               f"server log:\n{_tail(self.log)}")

    def __enter__(self) -> Postgres:
        try:
            (self.root / "pw").write_text(self.password)
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                for path in (self.root, self.root / "pw"):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            self._pg("initdb", "-D", str(self.data), "-U", DB_USER, "--auth=scram-sha-256",
                     f"--pwfile={self.root / 'pw'}", "-E", "UTF8", "--no-sync")
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
            self._create_database()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _create_database(self) -> None:
        import psycopg2

        db = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, password=self.password,
                              dbname="postgres")
        try:
            db.autocommit = True  # CREATE DATABASE cannot run in a transaction
            db.cursor().execute(f"CREATE DATABASE {DB_NAME}")
        finally:
            db.close()

    @property
    def store_uri(self) -> str:
        """The backend store URI, without the password (the server reads PGPASSWORD)."""
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def __exit__(self, *exc) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class MlflowServer:
    """`with MlflowServer(pg, artifacts, log) as server:` `mlflow server` on the PostgreSQL store, one
    uvicorn worker, artifacts proxied to `artifacts`, healthy; its process group stopped on exit."""

    def __init__(self, pg: Postgres, artifacts: Path, log: Path, env: dict[str, str]) -> None:
        self.pg, self.artifacts, self.log, self.port = pg, artifacts, log, free_port()
        self.env = {**env, "PGPASSWORD": pg.password,  # libpq reads it: no password on the command line
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runners: nothing here uses them
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MlflowServer:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.pg.store_uri,
               "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.log.parent, start_new_session=True)
        try:
            self._wait_healthy(deadline=time.time() + 180)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_healthy(self, deadline: float) -> None:
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}):\n{_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server not healthy on {self.uri} after its deadline:\n{_tail(self.log)}")

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        self.proc.wait(timeout=30)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is gone already
        pass
