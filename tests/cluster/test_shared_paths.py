"""Shared paths: the caches, the checkpoints and the outputs on one filesystem that several processes
and machines use at once (the ranks of a torchrun cell, a cell resumed on another node).

Processes that want the same cache artefact at the same moment build it once and all read that one
finished result; a builder SIGKILLed mid-build leaves nothing that looks finished and blocks no one
(its flock dies with it); a cell killed on one node resumes on another from its checkpoint, with
every path on the shared filesystem, and ends with an uninterrupted run's numbers.

This file is also the worker its tests start (`python test_shared_paths.py JOB ARGS`): real
processes, each with its own interpreter, as the ranks and nodes would be.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(TESTS), str(TESTS / "faults")) if p not in sys.path]

from conftest import compose, harness_cmd, subprocess_env  # noqa: E402
from harness.files import LOCK_ENV, build_once, locked  # noqa: E402
from tasks import DATA_DIR  # noqa: E402

VOCAB, CHARS = 600, 300_000   # a small tokenizer, trained in about a second
MAX_LENGTH = 64
WORKERS = 3


# ---- the worker: one process of a race --------------------------------------------------------------
def _count_calls(owner, name: str, counts: dict, key: str) -> None:
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        counts[key] += 1
        return original(*args, **kwargs)
    setattr(owner, name, counted)


def _cell_caches(data_dir: str, go: str = "") -> None:
    """Every cache a tiny_llama cell on task.data_dir rows makes, in the cell's order (tokenizer,
    random-init model, JSONL -> Arrow, features), started when the file `go` appears; prints one
    RESULT line: how often this process did each build, and digests of what it read."""
    import tokenizers
    import transformers
    from hydra.utils import instantiate

    import tasks.loading
    from harness.features import build_features, tokenizer_digest
    from harness.models import materialize
    from harness.tokenizer import byte_bpe

    counts = {"trained": 0, "saved": 0, "converted": 0}
    _count_calls(tokenizers.ByteLevelBPETokenizer, "train_from_iterator", counts, "trained")
    _count_calls(transformers.PreTrainedModel, "save_pretrained", counts, "saved")
    _count_calls(tasks.loading, "_validated_rows", counts, "converted")
    cfg = compose(["model=tiny_llama", f"task.data_dir={data_dir}"])
    task = instantiate(cfg.task, _convert_="all")
    if go:
        Path(f"{go}.ready-{os.getpid()}").touch()
        while not Path(go).exists():
            time.sleep(0.005)
    tokenizer = byte_bpe(VOCAB, CHARS)
    model_dir = Path(materialize(cfg.model, tokenizer))
    data = task.load_data(task.data_plan())
    features = build_features(task, data.splits["train"], data.plan.identity, tokenizer, "decoder", MAX_LENGTH,
                              label="train")
    digests = {"tokenizer": tokenizer_digest(tokenizer), "model": _digest((model_dir / "model.safetensors").read_bytes()),
               "rows": _digest(data.splits["train"].to_dict()), "features": _digest(features.to_dict())}
    print("RESULT " + json.dumps({"counts": counts, "digests": digests, "features": len(features)}), flush=True)


def _stall_in_features(data_dir: str) -> None:
    """Tokenise in batches of 20 and stop for good in the third one: a builder holding the
    features' lock with a half-written Arrow file, waiting to be killed."""
    import harness.features

    calls = []

    def stall() -> None:
        calls.append(None)
        if len(calls) == 3:
            print("STALLED", flush=True)
            time.sleep(600)
    harness.features.MAP_BATCH = 20
    harness.features.release_freed_memory = stall   # called at the start of every batch
    _cell_caches(data_dir)


def _hold(path: str) -> None:
    with locked(Path(path)):
        print("HELD", flush=True)
        time.sleep(600)


def _digest(value) -> str:
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _worker(job: str, *args: str, cache: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, job, *args], env={**subprocess_env(), "HARNESS_CACHE_DIR": str(cache),
                            **popen.pop("env", {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _result_of(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, out[-3000:]
    return json.loads(lines[0][len("RESULT "):])


def _temporaries(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if ".tmp" in p.name or p.name.endswith(".incomplete")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """task.data_dir rows for clone_bcb: real BigCloneBench pairs from the shipped pool."""
    rows = (DATA_DIR / "clone_detection_big_clone_bench" / "pool.jsonl").read_text(encoding="utf-8").splitlines()
    root = tmp_path_factory.mktemp("jsonl")
    for split, part in (("train", rows[:120]), ("validation", rows[120:150]), ("test", rows[150:200])):
        (root / f"{split}.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
    return root


# ---- the lock itself, in one process -----------------------------------------------------------------
def test_one_key_builds_once_while_other_keys_build_in_parallel(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("harness.files.QUIET_WAIT_S", 0.1)
    a, b = tmp_path / "a.arrow", tmp_path / "b.arrow"
    inside, release, made = threading.Event(), threading.Event(), []

    def slow(tmp: Path) -> None:
        made.append("a")
        inside.set()
        assert release.wait(30)
        tmp.write_text("a")

    first = threading.Thread(target=lambda: build_once(a, slow))
    first.start()
    assert inside.wait(30)
    returned = []
    second = threading.Thread(target=lambda: returned.append(build_once(a, lambda tmp: made.append("again"))))
    second.start()
    time.sleep(0.3)
    assert second.is_alive() and not a.exists()          # the same key waits for its builder ...
    assert build_once(b, lambda tmp: tmp.write_text("b")) and b.read_text() == "b"   # ... another key does not
    release.set()
    first.join(30)
    second.join(30)
    assert returned == [False] and made == ["a"] and a.read_text() == "a"   # built once, read by both
    assert f"waiting for {a}: another process is building it" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.arrow", "a.arrow.lock", "b.arrow", "b.arrow.lock"]


def test_a_failed_or_killed_build_leaves_nothing_that_looks_finished(tmp_path):
    path = tmp_path / "model"

    def fails(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        build_once(path, fails)
    assert not path.exists() and not list(tmp_path.glob("model.tmp*"))
    (tmp_path / "model.tmp4242").mkdir()                     # what a SIGKILLed builder leaves behind
    (tmp_path / "model.tmp4242" / "config.json").write_text("{half")
    assert build_once(path, lambda tmp: (tmp.mkdir(), (tmp / "config.json").write_text('{"whole": 1}')))
    assert json.loads((path / "config.json").read_text()) == {"whole": 1}
    assert not list(tmp_path.glob("model.tmp*"))             # the leftover went with the next build


def test_an_unknown_lock_kind_is_refused_with_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, "nfs")
    with pytest.raises(ValueError, match=r"HARNESS_LOCK='nfs': expected flock \(the default.*or soft"):
        build_once(tmp_path / "x", lambda tmp: tmp.write_text("x"))


@pytest.mark.parametrize("kind", ["flock", "soft"])
def test_a_lock_whose_holder_was_sigkilled_is_free_at_once(tmp_path, kind, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, kind)
    holder = _worker("hold", str(tmp_path / "features"), cache=tmp_path, env={LOCK_ENV: kind})
    assert holder.stdout.readline().strip() == "HELD"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(30)
    got = threading.Event()
    threading.Thread(target=lambda: (build_once(tmp_path / "features", lambda tmp: tmp.write_text("x")), got.set()),
                     daemon=True).start()
    assert got.wait(20), f"{kind}: the dead holder's lock still blocks"
    assert (tmp_path / "features").read_text() == "x"


# ---- real processes racing for the same caches ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_processes_starting_together_build_every_cache_once_and_read_the_same(tmp_path, data_dir):
    cache, go = tmp_path / "shared-cache", tmp_path / "go"
    procs = [_worker("caches", str(data_dir), str(go), cache=cache) for _ in range(WORKERS)]
    deadline = time.time() + 300
    while len(list(tmp_path.glob("go.ready-*"))) < WORKERS and time.time() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[0][-3000:] for p in procs if p.poll() is not None]
        time.sleep(0.05)
    go.touch()   # all imported and configured: they start building at the same moment
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS, [o[-3000:] for o in outs]
    results = [_result_of(o) for o in outs]
    total = {k: sum(r["counts"][k] for r in results) for k in results[0]["counts"]}
    assert total == {"trained": 1, "saved": 1, "converted": 3}, results   # one tokenizer, one model, 3 JSONL files
    tokenised = [o for o in outs if "[harness] train: tokenising 120 rows" in o]
    read = [o for o in outs if "[harness] train: 120 features from the cache (120 rows)" in o]
    assert (len(tokenised), len(read)) == (1, WORKERS - 1), outs
    assert all(r["digests"] == results[0]["digests"] and r["features"] == 120 for r in results)
    assert _temporaries(cache) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_builder_killed_mid_build_leaves_no_finished_cache_and_blocks_no_one(tmp_path, data_dir):
    cache = tmp_path / "shared-cache"
    own = _worker("caches", str(data_dir), cache=tmp_path / "own-cache")   # the same build, never killed
    stalled = _worker("stall", str(data_dir), cache=cache)
    out = []
    for line in stalled.stdout:
        out.append(line)
        if line.strip() == "STALLED":
            break
    assert out and out[-1].strip() == "STALLED", "".join(out)[-3000:]    # not ended before the kill
    features = cache / "features"
    half = [p for p in features.iterdir() if ".tmp" in p.name]
    assert len(half) == 1 and list(half[0].iterdir()), sorted(features.iterdir())    # two batches written
    os.kill(stalled.pid, signal.SIGKILL)                     # killed holding the lock, mid-write
    stalled.wait(30)
    assert [p.name for p in features.iterdir() if not p.name.endswith(".lock") and ".tmp" not in p.name] == []

    after = _worker("caches", str(data_dir), cache=cache)
    text = after.communicate(timeout=120)[0]                 # the dead builder's lock does not hold it up
    assert after.returncode == 0, text[-3000:]
    assert "[harness] train: tokenising 120 rows" in text    # built again, not read from the half file
    reference = own.communicate(timeout=300)[0]
    assert _result_of(text)["digests"] == _result_of(reference)["digests"]
    assert _temporaries(cache) == []                          # the killed build's half folder is gone


# ---- a cell killed on one node, resumed on another ------------------------------------------------------
NODE = """
import os, platform, runpy, time
platform.node = lambda: os.environ["TEST_NODE"]   # the host name liveness, provenance and the journal read
stall = int(os.environ.get("TEST_STALL_AFTER_SAVE") or 0)
if stall:
    from harness import checkpoint
    save, saves = checkpoint.save, []
    def stalling(*args, **kwargs):
        save(*args, **kwargs)
        saves.append(None)
        if len(saves) == stall:
            print("[node] checkpoint saved; waiting to be killed", flush=True)
            time.sleep(600)
    checkpoint.save = stalling
runpy.run_module("harness", run_name="__main__", alter_sys=True)
"""
STEPS, KILLED_AFTER, TIMEOUT = 12, 5, 2


def _cell() -> tuple[str, ...]:
    from test_exact_resume import DROPOUT
    return ("model=tiny_llama", "trainer=smoke", f"trainer.max_steps={STEPS}", "trainer.checkpoint_every=1",
            "trainer.log_every=1", "trainer.max_train_examples=32", DROPOUT)


def _on_node(shared: Path, node: str) -> tuple[str, ...]:
    """Every path the cell writes on the shared filesystem, laid out as runs/ is."""
    runs = shared / "runs"
    return (*_cell(), f"checkpoint_dir={runs}/checkpoints", f"tracker.uri=sqlite:///{runs}/mlflow.db",
            f"tracker.artifact_root={runs}/mlartifacts", f"hydra.run.dir={runs}/outputs/{node}",
            "tracker.heartbeat_interval=0.5", f"tracker.heartbeat_timeout={TIMEOUT}")


def _node_env(shared: Path, node: str, **extra: str) -> dict[str, str]:
    return {**subprocess_env(), "HARNESS_CACHE_DIR": str(shared / "runs" / "cache"), "TEST_NODE": node, **extra}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_cell_killed_on_one_node_resumes_on_another_from_the_shared_checkpoint(tmp_path):
    import torch
    from test_exact_resume import _history, _result, _runs

    shared, node_a, node_b, whole = (tmp_path / d for d in ("shared", "node-a", "node-b", "whole"))
    for d in (shared, node_a, node_b, whole):
        d.mkdir()
    with open(tmp_path / "whole.out", "w") as log:             # the same cell in its own store, meanwhile
        never_killed = subprocess.Popen(harness_cmd(*_cell()), cwd=whole, stdout=log, stderr=subprocess.STDOUT,
                                        env={**subprocess_env(), "HARNESS_CACHE_DIR": str(shared / "runs" / "cache")})
    with open(tmp_path / "node-a.err", "w") as err:
        first = subprocess.Popen([sys.executable, "-c", NODE, *_on_node(shared, "node-a")], cwd=node_a, stderr=err,
                                 env=_node_env(shared, "node-a", TEST_STALL_AFTER_SAVE=str(KILLED_AFTER)),
                                 stdout=subprocess.PIPE, text=True)
    seen = []
    for line in first.stdout:
        seen.append(line)
        if line.startswith("[node] checkpoint saved"):
            break
    assert seen and seen[-1].startswith("[node] checkpoint saved"), \
        "".join(seen)[-2000:] + (tmp_path / "node-a.err").read_text()[-3000:]
    os.kill(first.pid, signal.SIGKILL)                       # node A is gone mid-training
    first.wait(30)
    [checkpoint] = shared.glob("runs/checkpoints/*/checkpoint.pt")
    assert torch.load(checkpoint, weights_only=False)["progress"]["stats"]["steps"] == KILLED_AFTER
    _, [killed] = _runs(shared)
    assert (killed.info.status, killed.data.tags["harness.host"]) == ("RUNNING", "node-a")
    time.sleep(TIMEOUT + 1.5)                                # its heartbeat is now older than the timeout

    second = subprocess.run([sys.executable, "-c", NODE, *_on_node(shared, "node-b")], cwd=node_b,
                            env=_node_env(shared, "node-b"), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "features from the cache" in second.stdout and "tokenising" not in second.stdout   # node A's caches
    _, [resumed] = _runs(shared)
    assert (resumed.info.run_id, resumed.info.status) == (killed.info.run_id, "FINISHED")     # the same run
    assert resumed.data.tags["harness.resumed"] == "true" and resumed.data.tags["harness.host"] == "node-b"
    result = _result(shared)
    assert result["status"] == "FINISHED" and result["cost"]["resumed_from_step"] == KILLED_AFTER
    assert not list(shared.glob("runs/checkpoints/*/checkpoint.pt"))               # discarded once FINISHED
    assert not (node_a / "runs").exists() and not (node_b / "runs").exists()       # nothing in a node's own dir

    assert never_killed.wait(timeout=600) == 0, (tmp_path / "whole.out").read_text()[-3000:]
    reference = _result(whole)
    assert result["metrics"] == reference["metrics"]
    assert result["confidence_intervals"] == reference["confidence_intervals"]
    _, [uninterrupted] = _runs(whole)
    for key in ("train_loss", "lr"):
        history = _history(shared, resumed.info.run_id, key)
        assert [s for s, _ in history] == list(range(1, STEPS + 1))                # each step logged once
        assert history == _history(whole, uninterrupted.info.run_id, key)


if __name__ == "__main__":
    job, *arguments = sys.argv[1:]
    {"caches": _cell_caches, "stall": _stall_in_features, "hold": _hold}[job](*arguments)
