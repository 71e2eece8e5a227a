"""Streamed corpora for continued pretraining (code_corpus_github / _stack / _repos): hub-layout
mirrors with the datasets' real columns and file layout, a PolyCoder-layout folder, filters,
exact and near deduplication, the token budget, held-out files by a stable hash, the record of
what was read, resuming a killed build at the same stream position, and a whole cell."""
from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import hydra.utils
import pytest

from conftest import compose
from harness.models import load_tokenizer
from harness.run import run
from tasks.schema import DataError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
GITHUB_CODE = {"code": "string", "repo_name": "string", "path": "string", "language": "string",
               "license": "string", "size": "int32"}
STACK = {"content": "string", "max_stars_repo_path": "string", "max_stars_repo_name": "string", "lang": "string",
         "max_stars_repo_licenses": "list", "size": "int64", "ext": "string"}


def _files(n: int) -> list[tuple[str, str]]:
    paths = sorted(p for d in ("json", "email", "http", "urllib", "logging", "html") for p in (STDLIB / d).glob("*.py"))
    out = [(p.relative_to(STDLIB).as_posix(), p.read_text()) for p in paths if p.stat().st_size > 200]
    return out[:n]


def _write_parquet(path: Path, rows: list[dict], schema: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "list": pa.list_(pa.string())}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([(k, types[t]) for k, t in schema.items()])), path)


def _card(repo_dir: Path) -> None:
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "README.md").write_text("---\nlicense: other\n---\n# test fixture in the hub's layout\n")


@pytest.fixture
def github_mirror(tmp_path):
    """codeparrot/github-code as the hub serves it: data/train-0000N-of-0000M.parquet."""
    files = _files(30)
    rows = [{"code": text, "repo_name": f"owner{i % 5}/repo{i % 5}", "path": path, "language": "Python",
             "license": "mit", "size": len(text.encode())} for i, (path, text) in enumerate(files)]
    base = rows[3]
    lines = base["code"].splitlines()
    rows += [
        {**base, "repo_name": "fork/copy", "path": "copy/" + base["path"]},                          # exact copy
        {**base, "repo_name": "fork/near", "path": "near/" + base["path"],                           # one line changed
         "code": "\n".join(lines[:-1] + [lines[-1] + "  # changed"])},
        {**rows[4], "repo_name": "x/java", "path": "A.java", "language": "Java"},
        {**rows[5], "repo_name": "x/gpl", "path": "gpl.py", "license": "gpl-3.0"},
        {**rows[6], "repo_name": "x/big", "path": "big.py", "size": 2_000_000},
    ]
    repo = tmp_path / "mirror" / "codeparrot" / "github-code"
    _card(repo)
    half = len(rows) // 2
    _write_parquet(repo / "data" / "train-00000-of-00002.parquet", rows[:half], GITHUB_CODE)
    _write_parquet(repo / "data" / "train-00001-of-00002.parquet", rows[half:], GITHUB_CODE)
    return tmp_path / "mirror", rows


def _task(name: str, *overrides: str):
    return hydra.utils.instantiate(compose([f"task={name}", *overrides]).task, _convert_="all")


TOKENIZER = None


def _tokenizer():
    global TOKENIZER
    if TOKENIZER is None:
        TOKENIZER = load_tokenizer(compose(["model=tiny_llama"]).model)
    return TOKENIZER


def _load(task, mirror=None):
    return task.load_data(task.data_plan(str(mirror) if mirror else None), tokenizer=_tokenizer())


def test_the_stream_is_filtered_deduplicated_held_out_and_recorded(github_mirror, tmp_path, monkeypatch):
    mirror, rows = github_mirror
    held = "task.held_out={validation: 0.1, test: 0.2, max_documents: 64}"
    data = _load(_task("code_corpus_github", "task.licenses=[mit]", "task.max_train_tokens=null", held), mirror)
    record = data.record()["stream"]
    assert record["documents_seen"] == len(rows)
    assert record["dropped"] == {"language": 1, "license": 1, "size": 1, "exact_duplicate": 1, "near_duplicate": 1}
    kept = record["documents_kept"]
    assert sum(kept.values()) == len(rows) - 5 and kept["test"] >= 1 and kept["train"] >= 10
    assert record["dataset"] == "codeparrot/github-code" and record["filters"]["licenses"] == ["mit"]
    assert record["train_tokens"] == sum(len(r["input_ids"]) for r in data.splits["train"])
    train, test = set(data.splits["train"]["path"]), set(data.splits["test"]["path"])
    assert not train & test and {"A.java", "gpl.py", "big.py", "copy/" + rows[3]["path"]}.isdisjoint(train | test)
    # held out by a stable hash of repo/path: the same files whatever the shard size (a fresh build)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "fresh-cache"))
    again = _load(_task("code_corpus_github", "task.licenses=[mit]", "task.max_train_tokens=null", held,
                        "task.shard_documents=3"), mirror)
    assert set(again.splits["test"]["path"]) == test, (sorted(again.splits["test"]["path"]), sorted(test))
    assert again.record()["stream"]["shards"] > record["shards"], (again.record()["stream"]["shards"], record["shards"])


def test_the_token_budget_stops_the_stream(github_mirror):
    mirror, rows = github_mirror
    data = _load(_task("code_corpus_github", "task.max_train_tokens=20000", "task.shard_documents=4",
                       "task.held_out={validation: 0.0, test: 0.2, max_documents: 64}"), mirror)
    record = data.record()["stream"]
    assert record["budget_reached"] and 20_000 <= record["train_tokens"] < 20_000 + 30_000
    assert record["documents_seen"] < len(rows)


def test_the_stack_streams_only_the_wanted_language_folders(tmp_path):
    files = _files(12)
    repo = tmp_path / "mirror" / "bigcode" / "the-stack"
    _card(repo)
    for lang, ext in (("python", "py"), ("java", "java")):
        _write_parquet(repo / "data" / lang / "train-00000-of-00001.parquet",
                       [{"content": text, "max_stars_repo_path": f"{lang}/{path}", "max_stars_repo_name": f"r/{i}",
                         "lang": lang.title(), "max_stars_repo_licenses": ["MIT", "Apache-2.0"],
                         "size": len(text.encode()), "ext": ext} for i, (path, text) in enumerate(files)], STACK)
    data = _load(_task("code_corpus_stack", "task.languages=[python]", "task.licenses=[Apache-2.0]",
                       "task.held_out={validation: 0.0, test: 0.3, max_documents: 64}"), tmp_path / "mirror")
    paths = set(data.splits["train"]["path"]) | set(data.splits["test"]["path"])
    assert paths and all(p.startswith("python/") for p in paths)
    assert data.record()["stream"]["documents_seen"] == len(files)


def test_a_folder_of_repositories_in_polycoder_layout(tmp_path):
    root = tmp_path / "repos"
    for i, (path, text) in enumerate(_files(16)):
        target = root / f"repo{i % 3}" / "src" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "repo0" / "README.txt").write_text("not source code")
    (root / "repo1" / "Bad.java").write_bytes(b"class Bad { String s = \"\xff\xfe\"; }\n")
    data = _load(_task("code_corpus_repos", f"task.data_dir={root}",
                       "task.held_out={validation: 0.0, test: 0.25, max_documents: 64}"))
    record = data.record()["stream"]
    assert record["documents_seen"] == 17 and record["dropped"] == {"not_utf8": 1}   # README.txt: no language
    assert all(p.split("/")[0] in {"repo0", "repo1", "repo2"} for p in data.splits["train"]["path"])
    assert "stream" in data.plan.kind


def test_a_killed_build_resumes_at_the_same_stream_position(github_mirror, monkeypatch):
    from tasks import stream

    mirror, rows = github_mirror
    settings = ("task.max_train_tokens=null", "task.shard_documents=4",
                "task.held_out={validation: 0.1, test: 0.2, max_documents: 64}")
    uninterrupted = _load(_task("code_corpus_github", *settings, "task.min_file_bytes=2"), mirror)  # another cache key
    seen, original = [], stream.StreamBuild._take

    def crash_after_18(self, doc):
        seen.append(doc["path"])
        if len(seen) == 18:
            raise KeyboardInterrupt("killed")
        original(self, doc)

    monkeypatch.setattr(stream.StreamBuild, "_take", crash_after_18)
    task = _task("code_corpus_github", *settings)
    with pytest.raises(KeyboardInterrupt):
        _load(task, mirror)
    monkeypatch.setattr(stream.StreamBuild, "_take", original)
    resumed_from = json.loads(next(_stream_folders(task)).joinpath("state.json").read_text())["seen"]
    assert 0 < resumed_from < 18
    seen.clear()
    monkeypatch.setattr(stream.StreamBuild, "_take", lambda self, doc: (seen.append(doc["path"]), original(self, doc)))
    resumed = _load(task, mirror)
    assert len(seen) == len(rows) - resumed_from            # the stream went on from its position
    for split in ("train", "validation", "test"):
        assert resumed.splits[split]["path"] == uninterrupted.splits[split]["path"]
    assert resumed.splits["train"]["input_ids"] == uninterrupted.splits["train"]["input_ids"]
    assert resumed.record()["stream"]["dropped"] == uninterrupted.record()["stream"]["dropped"]


def _stream_folders(task):
    from harness.env import cache_dir

    return (p for p in sorted(cache_dir("streams").glob(f"{task.name}-*")) if not (p / "record.json").exists())


def test_offline_without_a_mirror_a_stream_is_an_error():
    task = _task("code_corpus_github")
    with pytest.raises(DataError, match="streaming needs the hub"):
        task.data_plan(None)


def test_a_streamed_cell_trains_and_scores(github_mirror, in_tmp):
    mirror, _ = github_mirror
    cfg = compose(["task=code_corpus_github", "model=tiny_llama", "trainer=smoke", "tracker=none",
                   f"hub_mirror={mirror}", "task.max_train_tokens=30000", "task.lines_per_file=2",
                   "task.held_out={validation: 0.05, test: 0.15, max_documents: 3}", "task.max_target_length=8"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    data = json.loads((in_tmp / "cell" / "result.json").read_text())["data"]
    assert data["kind"] == "stream" and data["stream"]["budget_reached"] and data["splits"]["test"] <= 3
    assert data["stream"]["dataset"] == "codeparrot/github-code" and not data["comparable"]
    assert {"token_accuracy", "exact_match", "edit_sim"} <= set(result.metrics)
