"""Liveness across machines: a heartbeat on each running cell, one lock per cell (config hash) kept
in the tracking store itself, and retries when a sqlite store is locked.

Heartbeat. While a cell runs, a daemon thread writes `harness.heartbeat` (epoch seconds) on its
MLflow run, and on its lock ticket, every `tracker.heartbeat_interval` s; it stops when the run ends.
A RUNNING run belongs to a live process when, on this host, its pid still exists (and its heartbeat,
if it has one, is fresh), and, on any other host, when its heartbeat is younger than
`tracker.heartbeat_timeout`. Only a dead one is taken over (resumed); a live one is skipped with
"running elsewhere (host, pid, heartbeat age)".

Lock. Runs cannot be the lock: a run's start time is the client's clock, so "earliest run wins" is
not one order across machines whose clocks differ. The lock uses what the store orders itself: the
model registry numbers each version of a registered model (max + 1, in one transaction, deleted
versions included), on a sqlite file as on a tracking server's database. One registered model,
`harness.cell-locks`, holds a version per claim ("ticket"), tagged with the cell's config hash and
its owner. To claim a cell a process
  1. creates a ticket (the store gives it the next number), then
  2. lists the cell's tickets: the lowest-numbered live ticket (its own counts as live) holds the cell.
  3. If that is its own, it holds the lock (and deletes the dead tickets below it); otherwise it
     deletes its ticket and skips the cell, naming the holder.
Race analysis. Numbers grow with real time: a ticket created after another is visible gets a higher
number. Take two live claims a < b. When b listed the tickets, a existed already (a was numbered
first), so b saw a live and lower and stood back; a saw nothing live below it and holds. So at most
one process holds a cell, and the lowest live ticket always holds, so a cell is never abandoned
by all its claimants at once. The one gap is the lease itself: a holder whose heartbeat stops for
longer than the timeout (a paused machine, a partition) is taken for dead; its ticket is deleted,
and its next heartbeat finds the ticket gone and warns that the cell may now run twice. Same-host
pid checks make a killed holder's lock free at once; other hosts wait for the timeout.
The holder re-reads the cell's runs once it holds the lock (the earlier holder may have just
finished it), so "one FINISHED run per cell" holds even for claims that raced a finishing cell.

Retries. sqlite answers "database is locked" when writers collide for longer than its busy timeout
(or at once, on a lock upgrade it cannot wait for). Every client call is retried on that error, with
exponential backoff and full jitter, a bounded number of times; any other error passes through.
"""
from __future__ import annotations

import os
import platform
import random
import threading
import time
from typing import Callable

HEARTBEAT_TAG = "harness.heartbeat"
LOCKS_MODEL = "harness.cell-locks"
LOCK_SOURCE = "harness-lock:///cells/{}"  # a version's source must be an absolute, non-local URI on a server
LOCKED = ("database is locked", "database table is locked")


def host() -> str:
    """This machine's name as liveness compares it: $HARNESS_HOST where set, else platform.node().
    Set it where one host name does not mean one pid namespace (containers on one node that share
    its name but not its pids, where a live cell would be taken for dead)."""
    return os.environ.get("HARNESS_HOST") or platform.node()


def owner() -> dict[str, str]:
    return {"harness.host": host(), "harness.pid": str(os.getpid())}


def heartbeat_age(tags: dict[str, str], now: float | None = None) -> float | None:
    beat = tags.get(HEARTBEAT_TAG, "")
    try:
        return (time.time() if now is None else now) - float(beat)
    except ValueError:
        return None


def alive(tags: dict[str, str], timeout: float, now: float | None = None) -> bool:
    """Does the process named in these tags (harness.host, harness.pid, harness.heartbeat) still run?"""
    age = heartbeat_age(tags, now)
    fresh = age is not None and age < timeout
    pid = tags.get("harness.pid", "")
    if tags.get("harness.host") == host() and pid.isdigit():
        return _pid_exists(int(pid)) and int(pid) != os.getpid() and (age is None or fresh)
    return fresh  # another machine: only its heartbeat tells (none: a run from before heartbeats, dead)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def describe(tags: dict[str, str], now: float | None = None) -> str:
    age = heartbeat_age(tags, now)
    beat = "no heartbeat" if age is None else f"heartbeat {max(age, 0):.0f} s ago"
    return f"host {tags.get('harness.host', '?')}, pid {tags.get('harness.pid', '?')}, {beat}"


def is_locked(err: BaseException) -> bool:
    """A sqlite "database is locked" anywhere in the chain (sqlalchemy OperationalError, or MLflow's
    TEMPORARILY_UNAVAILABLE wrapping it, here or behind a tracking server)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if any(text in str(err).lower() for text in LOCKED):
            return True
        err = err.__cause__ or err.__context__
    return False


def with_retries(fn: Callable, attempts: int, base: float = 0.2, cap: float = 10.0) -> Callable:
    """`fn`, retried on a locked database: waits uniform(0, min(cap, base * 2**n)) before try n+1."""
    def call(*args, **kwargs):
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 -- filtered just below
                if not is_locked(err) or attempt == attempts - 1:
                    raise
                delay = random.uniform(0, min(cap, base * 2 ** attempt))
                print(f"[harness] tracking store locked ({getattr(fn, '__name__', fn)}); retry "
                      f"{attempt + 1}/{attempts - 1} in {delay:.1f} s", flush=True)
                time.sleep(delay)
    return call


class RetryingClient:
    """An MlflowClient whose every method retries on a locked database."""

    def __init__(self, client, attempts: int):
        self._wrapped, self._attempts = client, attempts

    def __getattr__(self, name):
        if name.startswith("__") or name == "_wrapped":  # copy/pickle probes, before _wrapped is set
            raise AttributeError(name)
        value = getattr(self._wrapped, name)
        return with_retries(value, self._attempts) if callable(value) else value


class Heartbeat:
    """Calls `beat()` every `interval` s on a daemon thread until stop(); a failing beat only warns."""

    def __init__(self, beat: Callable[[], None], interval: float):
        self._beat, self._interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-heartbeat", daemon=True)
        self._warned: set[str] = set()

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception as err:  # noqa: BLE001 -- a tracker outage must not stop the training
                if type(err).__name__ not in self._warned:
                    self._warned.add(type(err).__name__)
                    print(f"[harness] warning: heartbeat not recorded: {type(err).__name__}: {err}", flush=True)


class CellLock:
    """The lock on one cell (config hash), as a ticket in the store's model registry (see above)."""

    def __init__(self, client, config_hash: str, timeout: float, who: dict[str, str] | None = None):
        self.client, self.config_hash, self.timeout = client, config_hash, timeout
        self.who = who or owner()
        self.version: str | None = None
        self.lost = False

    def acquire(self) -> str | None:
        """None when this process now holds the cell; else why not (who holds it)."""
        self._ensure_model()
        tags = {**self.who, "config_hash": self.config_hash, HEARTBEAT_TAG: f"{time.time():.0f}"}
        mine = self.client.create_model_version(LOCKS_MODEL, LOCK_SOURCE.format(self.config_hash), tags=tags,
                                                description=f"claim on cell {self.config_hash}").version
        tickets = sorted(self._tickets(), key=lambda v: int(v.version))
        live = [t for t in tickets if t.version == mine or alive(t.tags, self.timeout)]
        holder = live[0] if live else None
        if holder is None or holder.version == mine:
            self.version = mine
            for dead in {t.version for t in tickets} - {t.version for t in live}:
                if int(dead) < int(mine):
                    self._delete(dead)
            return None
        self._delete(mine)
        return (f"running elsewhere ({describe(holder.tags)}; lock ticket {holder.version}); it is taken "
                f"over once its heartbeat is older than tracker.heartbeat_timeout={self.timeout:g} s")

    def refresh(self) -> None:
        """Renew the ticket's heartbeat; warns once if another process has taken the lock over."""
        if self.version is None or self.lost:
            return
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_model_version_tag(LOCKS_MODEL, self.version, HEARTBEAT_TAG, f"{time.time():.0f}")
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.lost = True
            print(f"[harness] warning: lost the lock on cell {self.config_hash}: its heartbeat was older than "
                  f"tracker.heartbeat_timeout={self.timeout:g} s and another process took it over; the cell "
                  "may be trained twice", flush=True)

    def release(self) -> None:
        if self.version is not None and not self.lost:
            self._delete(self.version)
        self.version = None

    def _tickets(self) -> list:
        return list(self.client.search_model_versions(
            f"name = '{LOCKS_MODEL}' AND tags.config_hash = '{self.config_hash}'", max_results=1000))

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(LOCKS_MODEL)
            return
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            self.client.create_registered_model(LOCKS_MODEL, description=(
                "Cell locks of the harness (harness/liveness.py): each version is one process's claim on "
                "a cell, tagged with its config hash, host, pid and heartbeat; not a model."))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _delete(self, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_model_version(LOCKS_MODEL, version)
        except MlflowException as err:  # already deleted by a process that found it dead
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
