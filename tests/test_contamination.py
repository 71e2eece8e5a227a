"""`python -m harness.contamination` and `python -m harness.leaderboard --clean-only` on real Devign
functions (the shipped pool) written as a task.data_dir: planted near-duplicates (test rows copied
into train, and into a corpus file, with a small edit) are found, unrelated rows are not, the report
and the MLflow run hold them, and the clean-only leaderboard rescores a real cell without them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, harness_cmd, subprocess_env

POOL = ROOT / "tasks" / "data" / "defect_detection" / "pool.jsonl"
PLANTED_TRAIN = (0, 3, 5)   # test rows copied into train with one token changed
PLANTED_CORPUS = 7          # test row copied into a corpus file with one token changed
UNRELATED = 1               # a test row with no copy anywhere
NATURAL = {11: 24}          # a real duplicate in Devign itself: ids 372 and 1657, one FFmpeg function at two commits


def _edit(func: str) -> str:
    """A small edit: a comment after the first `return` (two tokens more)."""
    return func.replace("return", "return /* edited */", 1)


def _env() -> dict[str, str]:
    """The child imports this checkout's code (the venv's editable install may point at another)."""
    return {**subprocess_env(), "PYTHONPATH": str(ROOT)}


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """train 40 / validation 8 / test 16 real Devign functions (each 800-3000 characters, so one
    edited token keeps the Jaccard far above 0.8), with the planted copies."""
    rows = [json.loads(line) for line in POOL.read_text().splitlines()]
    rows = [r for r in rows if 800 <= len(r["func"]) <= 3000 and "return" in r["func"]][:64]
    test, train, validation = rows[:16], rows[16:56], rows[56:64]
    root = tmp_path_factory.mktemp("contamination")
    (root / "data").mkdir()
    planted = [{**test[i], "id": 10_000 + i, "func": _edit(test[i]["func"])} for i in PLANTED_TRAIN]
    _write(root / "data" / "train.jsonl", train + planted)
    _write(root / "data" / "validation.jsonl", validation)
    _write(root / "data" / "test.jsonl", test)
    corpus = root / "corpus" / "nested"
    corpus.mkdir(parents=True)
    (corpus / "planted.c").write_text(_edit(test[PLANTED_CORPUS]["func"]))
    (root / "corpus" / "unrelated.c").write_text(rows[64 - 1]["func"])  # a validation function, not a test one
    return root


def _contamination(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.contamination", "task=defect", f"task.data_dir={root / 'data'}",
           f"contamination.out_dir={root / 'reports'}", *overrides]
    return subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checked(data):
    done = _contamination(data, f"contamination.corpus={data / 'corpus'}", "tracker=mlflow",
                          f"tracker.uri=sqlite:///{data / 'mlflow.db'}", f"tracker.artifact_root={data / 'art'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return data, json.loads(done.stdout.strip().splitlines()[-1]), done.stdout


def test_planted_near_duplicates_are_found_and_unrelated_rows_are_not(checked):
    root, out, stdout = checked
    report = json.loads(Path(out["report"]).read_text())
    assert set(map(int, report["near_duplicates"]["train"])) == set(PLANTED_TRAIN) | set(NATURAL)
    assert out["train_test_near_duplicates"] == len(PLANTED_TRAIN) + len(NATURAL) and out["test_rows"] == 16
    assert out["share"] == pytest.approx((len(PLANTED_TRAIN) + len(NATURAL)) / 16)
    assert out["validation_test_near_duplicates"] == 0
    assert UNRELATED not in report["contaminated_test_rows"]
    train_rows = {int(k): v["other"] for k, v in report["near_duplicates"]["train"].items()}
    assert train_rows == {**{i: 40 + n for n, i in enumerate(PLANTED_TRAIN)}, **NATURAL}  # planted copies: appended last
    assert (out["threshold"], out["num_perm"], out["shingle"]) == (0.8, 128, 5)
    assert "num_perm=128" in stdout and "threshold 0.8" in stdout


def test_the_corpus_directory_is_searched_file_by_file(checked):
    _, out, _ = checked
    report = json.loads(Path(out["report"]).read_text())
    assert out["corpus_near_duplicates"] == 1 and out["corpus_files"] == 2
    assert report["near_duplicates"]["corpus"] == {str(PLANTED_CORPUS): {
        "other": str(Path("nested") / "planted.c"), "estimated_jaccard": pytest.approx(1.0, abs=0.2)}}
    assert sorted(report["contaminated_test_rows"]) == sorted([*PLANTED_TRAIN, *NATURAL, PLANTED_CORPUS])


def test_examples_carry_estimated_and_exact_jaccard(checked):
    _, out, _ = checked
    first = out["examples"][0]
    assert first["source"] == "train" and first["test_row"] == PLANTED_TRAIN[0] and first["train_row"] == 40
    assert 0.8 <= first["exact_jaccard"] < 1.0 and first["estimated_jaccard"] >= 0.8
    assert first["test_snippet"] and first["other_snippet"]
    assert any(e["source"] == "corpus" and e["corpus_file"].endswith("planted.c") for e in out["examples"])


def test_the_check_is_an_mlflow_run_with_counts_and_the_report(checked):
    from mlflow import MlflowClient

    root, out, _ = checked
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.tags["harness.kind"] == "contamination" and run.data.tags["harness.status"] == "FINISHED"
    assert run.data.metrics["train_test_near_duplicates"] == len(PLANTED_TRAIN) + len(NATURAL)
    assert run.data.metrics["corpus_near_duplicates"] == 1
    assert [f.path for f in client.list_artifacts(run.info.run_id, "contamination")] == [
        f"contamination/{Path(out['report']).name}"]


@pytest.mark.parametrize("override, message", [
    ("contamination.corpus=NOWHERE", "not a directory"),
    ("contamination.threshold=1.5", "expected a Jaccard in (0, 1]"),
    ("contamination.splits=[trian]", "'trian' is not a split compared with test"),
])
def test_bad_settings_are_a_one_line_error(data, override, message):
    done = _contamination(data, override.replace("NOWHERE", str(data / "nowhere")), "tracker=none")
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def _leaderboard(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.leaderboard", "--runs-dir", str(root / "cells"), "--format", "json", *args]
    return subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, timeout=300)


def test_clean_only_rescores_a_real_cell_without_the_contaminated_rows(checked):
    from harness.leaderboard_stats import predictions_of

    root, out, _ = checked
    for name, method in (("one", "lora"), ("two", "ia3")):  # two entries: the paired test runs on the clean rows too
        cell = subprocess.run(harness_cmd("task=defect", f"task.data_dir={root / 'data'}", "model=tiny_bert",
                                          f"method={method}", "trainer=smoke", "tracker=none",
                                          f"hydra.run.dir={root / 'cells' / name}"),
                              cwd=root, env=_env(), capture_output=True, text=True, timeout=600)
        assert cell.returncode == 0, cell.stdout[-2000:] + cell.stderr[-2000:]
    record = {**json.loads((root / "cells" / "one" / "result.json").read_text()), "_dir": str(root / "cells" / "one")}
    refs, preds = predictions_of(record)
    dirty = set(json.loads(Path(out["report"]).read_text())["contaminated_test_rows"])
    kept = [k for k in range(len(refs)) if k not in dirty]
    expected = sum(refs[k] == preds[k] for k in kept) / len(kept)  # accuracy by hand on the clean rows
    assert expected != pytest.approx(record["primary_value"])       # leaving the rows out changes the score

    full = json.loads(_leaderboard(root).stdout)
    clean = _leaderboard(root, "--clean-only", "--contamination-dir", str(root / "reports"))
    assert clean.returncode == 0, clean.stderr[-2000:]
    rows = {row["method"]: row["defect"] for row in json.loads(clean.stdout)["rows"]}
    assert rows["lora"]["mean"] == pytest.approx(expected)
    assert {row["method"]: row["defect"]["mean"] for row in full["rows"]}["lora"] == pytest.approx(record["primary_value"])
    other = rows["lora"] if rows["ia3"]["best"] else rows["ia3"]
    assert other["untestable_reason"] is None and 0 <= other["p_value"] <= 1  # McNemar on the 11 clean rows
    assert "5 of 16 test rows left out" in clean.stderr


def test_clean_only_refuses_a_task_without_a_report(checked, tmp_path):
    root, _, _ = checked
    if not (root / "cells").is_dir():
        pytest.skip("needs the cell of the clean-only test")
    done = _leaderboard(root, "--clean-only", "--contamination-dir", str(tmp_path))
    assert done.returncode != 0
    assert "no contamination report for task defect" in done.stderr
    assert "python -m harness.contamination task=defect" in done.stderr


@pytest.mark.parametrize("task, train, test, found, in_validation", [
    ("defect", 1898, 581, 8, 1), ("concode", 1795, 2000, 7, 2), ("clone_bcb", 817, 380, 6, 5),
])
def test_the_figures_of_the_shipped_data_readme(tmp_path, task, train, test, found, in_validation):
    """tasks/data/README.md ("Contamination") quotes these counts of the shipped splits."""
    cmd = [sys.executable, "-m", "harness.contamination", f"task={task}", "tracker=none",
           f"contamination.out_dir={tmp_path / 'reports'}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["train_rows"], out["test_rows"], out["train_test_near_duplicates"]) == (train, test, found)
    assert out["validation_test_near_duplicates"] == in_validation
