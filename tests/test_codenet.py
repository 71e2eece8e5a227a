"""CodeNet in its own layout (IBM/Project_CodeNet README.md): data/<problem>/<language>/<submission>,
metadata/problem_list.csv and metadata/<problem>.csv, benchmark subsets <subset>/<problem>/<file>;
problem classification (stratified per problem) and similar-code retrieval (split by problem)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import compose
from harness.run import run
from metrics.__main__ import main as metrics_main
from tasks.schema import DataError
from tasks.splits import bucket

HEADER = ("submission_id,problem_id,user_id,date,language,original_language,filename_ext,status,"
          "cpu_time,memory,code_size,accuracy")
PROBLEM_LIST = "id,name,dataset,time_limit,memory_limit,rating,tags,complexity"
# (language folder = metadata `language`, original_language, filename_ext), as CodeNet maps them
LANGUAGES = [("C++", "C++14 (GCC 5.4.1)", "cpp"), ("Python", "Python (3.4.3)", "py"),
             ("Java", "Java8 (OpenJDK 1.8.0)", "java")]
STATUS = ["Accepted", "Accepted", "Wrong Answer", "Accepted", "Time Limit Exceeded", "Accepted",
          "Accepted", "Compile Error", "Accepted"]


def program(problem: str, k: int, language: str) -> str:
    if language == "Python":
        return f"# {problem}\nn = int(input())\nprint(n * {k} + 1)\n"
    if language == "Java":
        return (f"// {problem}\npublic class Main {{\n    public static void main(String[] a) {{\n"
                f"        System.out.println({k});\n    }}\n}}\n")
    return (f"// {problem}\n#include <cstdio>\nint main() {{\n    int n;\n    scanf(\"%d\", &n);\n"
            f"    printf(\"%d\\n\", n + {k});\n}}\n")


def build_codenet(root: Path, n_problems: int = 8, per_problem: int = 9, first: int = 1) -> dict:
    """A CodeNet root in the real layout; returns {submission id: (problem, language, status)}."""
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    listed = root / "metadata" / "problem_list.csv"
    lines = listed.read_text().splitlines() if listed.exists() else [PROBLEM_LIST]
    made = {}
    for p in range(first, first + n_problems):
        problem = f"p{p:05d}"
        lines.append(f"{problem},Problem {p},AtCoder,2000,262144,,,")
        rows = [HEADER]
        for k in range(per_problem):
            sid = f"s{p * 1000 + k:09d}"
            language, original, ext = LANGUAGES[(p + k) % 3]
            status = STATUS[k % len(STATUS)]
            code = program(problem, k, language)
            folder = root / "data" / problem / language
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{sid}.{ext}").write_text(code)
            rows.append(f"{sid},{problem},u{p * 7 + k:09d},{1480319506 + k},{language},{original},{ext},"
                        f"{status},{10 * k},{15496},{len(code)},{'4/4' if status == 'Accepted' else '1/4'}")
            made[sid] = (problem, language, status)
        # the metadata CSV files may have DOS line endings (tools/aggregation-scripts)
        (root / "metadata" / f"{problem}.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    (root / "data" / "p09999").mkdir(parents=True, exist_ok=True)  # an empty problem: folder, no CSV
    listed.write_text("\n".join([*lines, "p09999,Empty,AIZU,1000,65536,,,"]) + "\n")
    return made


def build_subset(folder: Path, n_problems: int = 5, per_problem: int = 6) -> None:
    """A benchmark subset: <subset>/<problem>/<submission>.java, no metadata."""
    for p in range(n_problems):
        problem = folder / f"p{p + 2000:05d}"
        problem.mkdir(parents=True)
        for k in range(per_problem):
            (problem / f"s{700000000 + p * 100 + k}.java").write_text(program(problem.name, k, "Java"))


def task(name: str, root: Path, *overrides: str):
    return instantiate(compose([f"task={name}", f"task.data_dir={root}", *overrides]).task, _convert_="all")


def ids(rows) -> list[str]:
    return list(rows["id"])


@pytest.fixture
def codenet(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "Project_CodeNet"
    return root, build_codenet(root)


# ---- which submissions ------------------------------------------------------------------------------
def test_only_accepted_submissions_by_default_and_a_switch_for_all(codenet):
    root, made = codenet
    accepted = {s for s, (_, _, status) in made.items() if status == "Accepted"}
    splits = task("codenet_classify", root).load_splits()
    rows = [r for part in splits.values() for r in part]
    assert {r["id"] for r in rows} == accepted and {r["status"] for r in rows} == {"Accepted"}
    everything = task("codenet_classify", root, "task.statuses=null").load_splits()
    assert {r["id"] for part in everything.values() for r in part} == set(made)
    wrong = task("codenet_retrieval", root, "task.statuses=[Wrong Answer, Compile Error]").load_splits()
    assert {r["status"] for part in wrong.values() for r in part} == {"Wrong Answer", "Compile Error"}


def test_metadata_gives_language_problem_and_file(codenet):
    root, made = codenet
    (root / "data" / "p00001" / "C++" / "s999999999.cpp").write_text("int main() {}\n")  # not in metadata
    splits = task("codenet_retrieval", root, "task.languages=[Python, Java]").load_splits()
    rows = [r for part in splits.values() for r in part]
    assert rows and {r["language"] for r in rows} == {"Python", "Java"}
    for r in rows:
        problem, language, _ = made[r["id"]]
        assert (r["problem"], r["language"]) == (problem, language)
        ext = {"Python": "py", "Java": "java"}[language]
        assert r["code"] == (root / "data" / problem / language / f"{r['id']}.{ext}").read_text()
    assert "s999999999" not in {r["id"] for r in rows}


def test_caps_per_problem_and_on_problems(codenet):
    root, _ = codenet
    splits = task("codenet_retrieval", root, "task.max_per_problem=4", "task.max_problems=5").load_splits()
    per_problem = Counter(r["problem"] for part in splits.values() for r in part)
    assert len(per_problem) == 5 and set(per_problem.values()) == {4}
    few = task("codenet_retrieval", root, "task.min_per_problem=7").load_splits
    with pytest.raises(DataError, match="no problem has 7 submissions with status in \\['Accepted'\\]"):
        few()


# ---- splits ------------------------------------------------------------------------------------------
def test_retrieval_splits_are_disjoint_by_problem_and_stable(codenet):
    root, _ = codenet
    first, again = task("codenet_retrieval", root).load_splits(), task("codenet_retrieval", root).load_splits()
    problems = {s: {r["problem"] for r in rows} for s, rows in first.items()}
    assert all(problems.values()) and set(problems) == {"train", "validation", "test"}
    assert not (problems["train"] & problems["validation"] or problems["train"] & problems["test"]
                or problems["validation"] & problems["test"])
    assert {s: ids(rows) for s, rows in first.items()} == {s: ids(rows) for s, rows in again.items()}
    test = [r["problem"] for r in first["test"]]  # grouped: a truncated test split keeps whole problems
    assert test == sorted(test, key=lambda p: (bucket(p), p))


def test_classification_split_is_stratified_per_problem(codenet, tmp_path):
    root, made = codenet
    splits = task("codenet_classify", root).load_splits()
    counts = {s: Counter(r["problem"] for r in rows) for s, rows in splits.items()}
    for problem, n in Counter(r["problem"] for rows in splits.values() for r in rows).items():
        test, validation = max(1, int(0.2 * n)), max(1, int(0.16 * n + 1e-9))
        assert (counts["train"][problem], counts["validation"][problem], counts["test"][problem]) == \
            (n - test - validation, validation, test)
    every = [i for rows in splits.values() for i in ids(rows)]
    assert len(every) == len(set(every))
    # by the submission's own hash: adding problems elsewhere moves no submission of this one
    other = tmp_path / "bigger"
    build_codenet(other)
    build_codenet(other, n_problems=3, first=50)
    bigger = task("codenet_classify", other).load_splits()
    for s in splits:
        assert set(ids(splits[s])) == {i for i in ids(bigger[s]) if int(i[1:]) < 50_000}


def test_classes_are_the_problems_of_the_data(codenet):
    root, _ = codenet
    t = task("codenet_classify", root, "task.problems=[p00002,p00004,p00007]")
    assert t.model_kwargs() == {"num_labels": 3}  # read from the data when asked before loading
    splits = t.load_splits()
    assert t.labels == ["p00002", "p00004", "p00007"]
    assert set(t.references(splits["test"])) == {0, 1, 2}


# ---- benchmark subsets ---------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["Project_CodeNet_Java250", "derived/benchmarks/Project_CodeNet_Java250"])
def test_a_benchmark_subset_is_selected_by_config(codenet, where):
    root, _ = codenet
    build_subset(root / where)
    splits = task("codenet_classify", root, "task.subset=Project_CodeNet_Java250").load_splits()
    rows = [r for part in splits.values() for r in part]
    assert len(rows) == 30 and {r["language"] for r in rows} == {"Java"}
    assert {r["problem"] for r in rows} == {f"p{p + 2000:05d}" for p in range(5)}
    assert all(Counter(r["problem"] for r in part) for part in splits.values())
    itself = task("codenet_retrieval", root / where, "task.subset=Project_CodeNet_Java250").load_splits()
    assert sum(len(p) for p in itself.values()) == 30  # data_dir may be the subset folder itself


def test_an_unknown_or_missing_subset_is_named(codenet):
    root, _ = codenet
    with pytest.raises(DataError, match=r"task.subset=Java999: not a known benchmark; expected one of "
                                        r"\['Project_CodeNet_C\+\+1000'"):
        task("codenet_classify", root, "task.subset=Java999").data_plan()
    missing = re.escape(str(root / "Project_CodeNet_Python800"))
    with pytest.raises(DataError, match=rf"no folder {missing} .*<subset>/<problem>/"):
        task("codenet_classify", root, "task.subset=Project_CodeNet_Python800").data_plan()


# ---- bad roots and bad files ------------------------------------------------------------------------
def test_a_wrong_root_names_the_path_and_the_layout(codenet, tmp_path):
    root, _ = codenet
    with pytest.raises(DataError, match=r"task.data_dir is not set; expected a CodeNet root: <root>/data/"):
        instantiate(compose(["task=codenet_retrieval"]).task, _convert_="all").data_plan()
    with pytest.raises(DataError, match=rf"task.data_dir={re.escape(str(tmp_path))}/nowhere: not a directory"):
        task("codenet_classify", tmp_path / "nowhere").data_plan()
    with pytest.raises(DataError, match=rf"no {re.escape(str(tmp_path))}/data; expected the CodeNet layout .*"
                                        rf"did you mean task.data_dir={re.escape(str(root))}\?"):
        task("codenet_classify", tmp_path).data_plan()  # the folder the tarball was unpacked in
    (root / "metadata" / "problem_list.csv").unlink()
    with pytest.raises(DataError, match=rf"no {re.escape(str(root))}/metadata/problem_list.csv; expected"):
        task("codenet_retrieval", root).data_plan()


def test_bad_metadata_and_missing_files_are_named(codenet):
    root, made = codenet
    meta = root / "metadata" / "p00003.csv"
    text = meta.read_text()
    meta.write_text(text.replace("filename_ext", "extension", 1))
    with pytest.raises(DataError, match=rf"{re.escape(str(meta))}: no column 'filename_ext' in its header; "
                                        r"expected submission_id,problem_id,user_id,"):
        task("codenet_classify", root).load_splits()
    meta.write_text(text)
    sid = next(s for s, (p, _, status) in made.items() if p == "p00005" and status == "Accepted")
    gone = next((root / "data" / "p00005").glob(f"*/{sid}.*"))
    gone.unlink()
    with pytest.raises(DataError, match=rf"p00005.csv:\d+: no file {re.escape(str(gone))}; expected <root>/data/"):
        task("codenet_classify", root).load_splits()


def test_non_utf8_bytes_are_replaced_unless_strict(codenet):
    root, made = codenet
    sid = next(s for s, (p, _, status) in made.items() if p == "p00002" and status == "Accepted")
    path = next((root / "data" / "p00002").glob(f"*/{sid}.*"))
    path.write_bytes(b"// \x82\xa0 Shift_JIS comment\nint main() {}\n")
    rows = {r["id"]: r for part in task("codenet_retrieval", root).load_splits().values() for r in part}
    assert rows[sid]["code"].startswith("// \ufffd\ufffd Shift_JIS")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: bytes at offset 3 are not UTF-8"):
        task("codenet_retrieval", root, "task.decode_errors=strict").load_splits()


# ---- whole cells ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,key", [("codenet_classify", "accuracy"), ("codenet_retrieval", "map_at_r")])
def test_a_cell_end_to_end(in_tmp, codenet, capsys, name, key):
    root, _ = codenet
    cfg = compose(["model=tiny_bert", f"task={name}", f"task.data_dir={root}", "trainer=smoke", "tracker=none",
                   "trainer.max_eval_examples=null"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.primary_metric == key and 0.0 <= result.metrics[key] <= 1.0
    record = json.loads((in_tmp / "cell" / "result.json").read_text())["data"]
    loaded = task(name, root).load_splits()
    assert record["splits"] == {s: len(rows) for s, rows in loaded.items()} and record["kind"] == "files"
    assert record["comparable"] is False and "CodeNet" in record["why_not_comparable"]
    capsys.readouterr()  # the official files rescore to the same value
    files = result.files
    assert metrics_main([result.metric, "--gold", files["gold"], "--predictions", files["predictions"]]) == 0
    assert json.loads(capsys.readouterr().out)["unrounded"][key] == pytest.approx(result.metrics[key])
    low, high = result.confidence_intervals[key]
    assert low <= result.metrics[key] <= high
    if name == "codenet_classify":
        assert result.naive == "majority" and "accuracy" in result.naive_metrics
        assert set(result.prediction_distribution) == {r["problem"] for r in loaded["train"]}


def test_multiclass_accuracy_per_example_and_interval():
    from metrics.bootstrap import confidence_interval
    from metrics.registry import per_example

    assert per_example("defect_detection", [2, 3, 0], [3, 3, 0]) == {"correct": [0.0, 1.0, 1.0]}
    low, high = confidence_interval("defect_detection", [2, 4, 5], [3, 3, 3], n_resamples=50, seed=0)["accuracy"]
    assert low == high == 0.0
