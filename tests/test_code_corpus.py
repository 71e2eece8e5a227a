"""code_corpus: a directory of source files (here: part of this machine's Python standard library),
split by file, continued pretraining, token- and line-level completion on the held-out files."""
from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate

from conftest import compose
from harness.run import run
from metrics.__main__ import main as metrics_main
from tasks.schema import DataError

STDLIB_SUBSET = "task.include=[json/*.py,html/*.py]"


def _task(*overrides: str):
    return instantiate(compose(["task=code_corpus", *overrides]).task, _convert_="all")


def test_split_is_by_file_deterministic_and_disjoint():
    first, second = _task(STDLIB_SUBSET).load_splits(), _task(STDLIB_SUBSET).load_splits()
    paths = {name: [r["path"] for r in rows] for name, rows in first.items()}
    assert paths == {name: [r["path"] for r in rows] for name, rows in second.items()}
    assert all(paths[s] for s in ("train", "validation", "test"))
    every = [p for ps in paths.values() for p in ps]
    assert len(every) == len(set(every)) and "json/decoder.py" in every


def test_continued_pretraining_and_both_completion_levels(in_tmp, capsys):
    cfg = compose(["task=code_corpus", "model=tiny_llama", "trainer=smoke", "tracker=none", STDLIB_SUBSET])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.cost["train_steps"] == 3 and result.primary_metric == "token_accuracy"
    for key in ("token_accuracy", "total_tokens", "exact_match", "edit_sim"):
        assert key in result.metrics
    assert {"token_accuracy", "exact_match", "edit_sim"} <= set(result.confidence_intervals)
    for name, stem in (("code_completion_token", "token_"), ("code_completion_line", "line_")):
        capsys.readouterr()
        assert metrics_main([name, "--gold", result.files[f"{stem}gold"],
                             "--predictions", result.files[f"{stem}predictions"]]) == 0
        printed = json.loads(capsys.readouterr().out)["unrounded"]
        assert all(printed[k] == pytest.approx(result.metrics[k]) for k in printed)


def test_a_repository_directory_through_data_dir(tmp_path):
    repo = tmp_path / "repo"
    for i in range(6):
        (repo / "pkg").mkdir(parents=True, exist_ok=True)
        (repo / "pkg" / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
    (repo / "pkg" / "empty.py").write_text("")
    splits = _task(f"task.data_dir={repo}", "task.include=[**/*.py]").load_splits()
    assert sum(len(v) for v in splits.values()) == 6 and splits["test"]


def test_non_utf8_source_file_is_named(tmp_path):
    for name, data in (("a.py", b"x = 1\n"), ("b.py", b"y = '\xff'\n")):
        (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=r"b\.py: bytes at offset 5 are not UTF-8"):
        _task(f"task.data_dir={tmp_path}", "task.include=[*.py]").load_splits()


def test_encoder_and_seq2seq_are_skipped(in_tmp):
    for model in ("tiny_bert", "tiny_t5"):
        result = run(compose(["task=code_corpus", f"model={model}", "trainer=smoke", "tracker=none",
                              STDLIB_SUBSET]), in_tmp / model)
        assert result.status == "SKIPPED" and "decoder" in result.reason
