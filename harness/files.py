"""Files written whole or not at all, and cache artefacts built once however many processes want them.

Shared paths. The caches (HARNESS_CACHE_DIR), checkpoints and outputs may sit on a filesystem that
several processes and machines use at once: the N ranks of one torchrun cell, or a cell resumed on
another node. A cache artefact is then built under its own lock, a file `<artefact>.lock` beside it
(one lock per key: different artefacts build in parallel), by `build_once`: one process builds, the
others wait for the lock and read what it made. The build goes to a temporary name beside the
artefact and is renamed into place whole, so nothing reads half of one, and a process killed
mid-build leaves only a temporary (removed by the next build of that key), never an artefact that
looks finished.

The lock is `filelock.FileLock`, an flock(2) lock, which the kernel releases when its process dies:
a killed builder never blocks the next one. flock must be coherent across the machines that share
the filesystem: NFSv4 (and NFSv3 with lockd) is (Linux emulates flock with NFS byte-range locks),
Lustre is when mounted with `-o flock` (not `localflock`, which locks per node only), a local disk
always is. Where flock is missing (ENOSYS), filelock falls back to its soft lock by itself. Where
flock "works" but only per machine (NFS mounted `nolock` or `local_lock=flock|all`, Lustre
`localflock`), set HARNESS_LOCK=soft: filelock's SoftFileLock, a marker file created exclusively.
It works wherever O_EXCL does, but a marker left by a process killed on another machine is not
broken (one killed on the same machine is): delete the `.lock` file once that builder is known dead.
Lock files stay in place after release (flock waiters must share one inode); they are harmless.
"""
from __future__ import annotations

import errno
import glob
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

LOCK_ENV = "HARNESS_LOCK"   # flock (the default) | soft
QUIET_WAIT_S = 2.0          # a wait for a lock this short (a reader checking a finished cache) is not reported


@contextmanager
def atomic(path: Path, replace: bool = True):
    """Yield a temporary path beside `path`; when the block completes it is synced and renamed to
    `path` (os.replace is atomic), on any error it is removed. An OSError then names `path`.
    The block may make a file or a directory there. replace=False never replaces an existing
    `path` (another process made it meanwhile: its readers keep their files; ours is dropped)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            _publish(tmp, path)
    except BaseException as err:
        remove(tmp)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)
        raise


def _publish(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path` unless `path` exists: a directory by rename (refused onto a non-empty
    one), a file by a hard link (refused onto any existing name); both are atomic on NFS too."""
    try:
        if tmp.is_dir():
            os.rename(tmp, path)
            return
        try:
            os.link(tmp, path)
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            os.replace(tmp, path)  # a filesystem without hard links
            return
        tmp.unlink()
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        remove(tmp)


def remove(path: Path) -> None:
    """A file or a directory tree, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _lock_class():
    kind = os.environ.get(LOCK_ENV, "").strip().lower() or "flock"
    if kind == "flock":
        from filelock import FileLock
        return FileLock
    if kind == "soft":
        from filelock import SoftFileLock
        return SoftFileLock
    raise ValueError(f"{LOCK_ENV}={kind!r}: expected flock (the default: an flock(2) lock the kernel "
                     "releases when its process dies) or soft (a marker file, for filesystems whose "
                     "flock is not shared between machines)")


@contextmanager
def locked(path: Path):
    """Hold the lock of the artefact `path` (the file `<path>.lock` beside it) while the block runs;
    says so when another process holds it for longer than QUIET_WAIT_S and this one waits on."""
    from filelock import Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_class()(f"{path}.lock")
    try:
        lock.acquire(timeout=QUIET_WAIT_S)
    except Timeout:
        print(f"[harness] waiting for {path}: another process is building it ({path}.lock)", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_once(path: Path, make: Callable[[Path], None]) -> bool:
    """Make the artefact `path` (a file or a directory) unless it exists: under its lock, `make(tmp)`
    writes a temporary path beside it, renamed into place once make returns (`atomic`). Returns True
    when this process made it, False when it was there, or another process made it while this one
    waited. The leftovers of a killed build of this key (`<name>.tmp*`) are removed first."""
    if path.exists():
        return False
    with locked(path):
        if path.exists():
            return False
        for leftover in path.parent.glob(f"{glob.escape(path.name)}.tmp*"):
            remove(leftover)
        with atomic(path, replace=False) as tmp:
            make(tmp)
    return True
