"""Bad input data fails before training with one message naming file, line, field and what was
expected; `python -m harness task.data_dir=...` exits non-zero and records FAILED."""
from __future__ import annotations

import json
import subprocess

import pytest
from hydra.utils import instantiate

from conftest import ROOT, compose, harness_cmd, subprocess_env
from tasks.schema import DataError

GOOD = {"id": 1, "func": "int f(void) { return 0; }", "target": True, "project": "qemu", "commit_id": "ab"}


def _task(data_dir):
    return instantiate(compose(["task=defect", f"task.data_dir={data_dir}"]).task, _convert_="all")


def _write(tmp_path, train_lines: list, test_lines: list | None = None):
    as_bytes = lambda x: x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode()
    (tmp_path / "train.jsonl").write_bytes(b"".join(as_bytes(x) + b"\n" for x in train_lines))
    (tmp_path / "test.jsonl").write_bytes(b"".join(as_bytes(x) + b"\n" for x in (test_lines or [GOOD])))
    return tmp_path


CASES = {
    "missing field": ([GOOD, {k: v for k, v in GOOD.items() if k != "project"} | {"id": 2}],
                      ["train.jsonl:2", "'project'", "is missing", "expected fields"]),
    "extra field": ([GOOD | {"id": 2, "extra": 1}], ["train.jsonl:1", "'extra'", "not in the task's schema"]),
    "wrong type": ([GOOD | {"id": "2"}], ["train.jsonl:1", "'id'", "expected int"]),
    "unknown label": ([GOOD, GOOD | {"id": 2, "target": 2}], ["train.jsonl:2", "'target'", "expected bool"]),
    "invalid json": ([GOOD, '{"id": 2, "func": '], ["train.jsonl:2", "invalid JSON", "expected one JSON object per line"]),
    "empty split": ([""], ["train.jsonl", "the split is empty", "expected at least one JSON object"]),
    "non-utf8": ([GOOD, json.dumps(GOOD | {"id": 2}).encode().replace(b"qemu", b"q\xffemu")],
                 ["train.jsonl:2", "not UTF-8", "expected a UTF-8 encoded JSONL file"]),
    "duplicate ids": ([GOOD, GOOD], ["train.jsonl:2", "'id'", "duplicates line 1", "expected unique ids"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_names_file_line_field_and_expectation(case, tmp_path):
    lines, expected = CASES[case]
    with pytest.raises(DataError) as err:
        _task(_write(tmp_path, lines)).load_splits()
    for part in expected:
        assert part in str(err.value), (part, str(err.value))


def test_unknown_label_value_is_named_with_the_allowed_values(tmp_path):
    rows = [{"idx": "a", "doc": "q", "code": "c", "code_tokens": "c", "docstring_tokens": "q", "label": 2}]
    (tmp_path / "train.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps(rows[0] | {"label": 1}) + "\n")
    task = instantiate(compose(["task=search_webquery", f"task.data_dir={tmp_path}"]).task, _convert_="all")
    with pytest.raises(DataError, match=r"train.jsonl:1: field 'label' has unknown value 2; expected one of \[0, 1\]"):
        task.load_splits()


def test_missing_test_split_is_named(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps(GOOD) + "\n")
    with pytest.raises(DataError, match="split 'test' is missing or empty"):
        _task(tmp_path).load_splits()


def test_good_local_data_loads_for_any_task(tmp_path):
    splits = _task(_write(tmp_path, [GOOD, GOOD | {"id": 2, "target": False}])).load_splits()
    assert [r["id"] for r in splits["train"]] == [1, 2] and list(splits["test"]) == [GOOD]


def test_cli_exits_non_zero_and_records_failed(tmp_path):
    (tmp_path / "data").mkdir()
    data = _write(tmp_path / "data", [GOOD, GOOD])
    out = tmp_path / "out"
    proc = subprocess.run(harness_cmd("task=defect", f"task.data_dir={data}", "model=tiny_bert", "trainer=smoke",
                                      "tracker=none", f"hydra.run.dir={out}"),
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "FAILED" and "train.jsonl:2" in record["reason"]
    assert not (out / "adapter").exists()
