"""nl2code (aiXcoder's AixBench): the loader on files in the benchmark's exact format, Java syntax
validity, the metric by hand, a whole cell on a tiny model, and clear errors on malformed files.

The fixtures follow the format of github.com/aixcoder-plugin/nl2code-dataset at commit
4c2003d0a4274c8ceec5cd6149dcf445136e4141 (src/main/resources/*.jsonl): one JSON object per line,
keys in the order task_id, raw_nl, signature (the manual set: no signature), non-ASCII text written
raw (ensure_ascii off), json.dumps's default separators, task ids with gaps; the autotest file ends
with a newline, the manual file does not. The rows themselves are made up here (none is copied).
"""
from __future__ import annotations

import json
import random
import subprocess

import pytest
from hydra.utils import instantiate

import metrics
from conftest import compose
from harness.run import run
from metrics.__main__ import main as metrics_main
from metrics.bootstrap import confidence_interval, paired_test, sufficient_stats
from metrics.formats import FormatError
from metrics.aixbench import read, valid_method, write
from metrics.registry import per_example
from tasks.schema import DataError

RESOURCES = "src/main/resources"
AUTOTEST = [
    {"task_id": 0, "raw_nl": "Return the larger of two integers.", "signature": "public static int max(int a, int b)"},
    {"task_id": 3, "raw_nl": "Reverse the given string.", "signature": "public String reverse(String s)"},
    {"task_id": 7, "raw_nl": "判断字符串是否为空", "signature": "public boolean isBlank(String s)"},
    {"task_id": 12, "raw_nl": "Sum an array of doubles.", "signature": "public double sum(double[] values) "},
]
MANUAL = [{"task_id": 0, "raw_nl": "Split a string on commas."}, {"task_id": 1, "raw_nl": "Close a stream quietly."}]


def lines(rows: list[dict]) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)


def benchmark(root, autotest=AUTOTEST, manual=MANUAL, git=False):
    """A checkout-shaped folder: src/main/resources/dataset_{autotest,manual}_nl.jsonl."""
    res = root / RESOURCES
    res.mkdir(parents=True)
    (res / "dataset_autotest_nl.jsonl").write_text(lines(autotest) + "\n", encoding="utf-8")
    (res / "dataset_manual_nl.jsonl").write_text(lines(manual), encoding="utf-8")
    if git:
        cmd = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(cmd + ["init", "-q"], check=True)
        subprocess.run(cmd + ["add", "."], check=True)
        subprocess.run(cmd + ["commit", "-qm", "fixture"], check=True)
        return subprocess.run(cmd + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return root


def task(*overrides):
    return instantiate(compose(["task=nl2code", *overrides]).task, _convert_="all")


# ---- the loader ---------------------------------------------------------------------------------------
def test_loader_reads_the_benchmark_format_and_trains_on_concode(tmp_path):
    commit = benchmark(tmp_path / "nl2code-dataset", git=True)
    t = task(f"task.data_dir={tmp_path / 'nl2code-dataset'}")
    data = t.load_data(t.data_plan())
    test = data.splits["test"]
    assert test["id"] == [0, 3, 7, 12]
    assert test["nl"][0] == "Return the larger of two integers. concode_field_sep public static int max(int a, int b)"
    assert test["nl"][2] == "判断字符串是否为空 concode_field_sep public boolean isBlank(String s)"
    assert test["code"] == ["", "", "", ""] and t.references(test) == ["", "", "", ""]
    record = data.record()
    assert record["splits"] == {"train": 1795, "validation": 205, "test": 4}   # CONCODE's shipped rows
    name = "aixcoder-plugin/nl2code-dataset:src/main/resources/dataset_autotest_nl.jsonl"
    assert name in record["source"] and record["revision"][name] == commit
    assert record["comparable"] is False and "no published BLEU" in record["why_not_comparable"]


def test_the_manual_set_and_a_flat_folder(tmp_path):
    benchmark(tmp_path / "repo")
    t = task(f"task.data_dir={tmp_path / 'repo'}", f"task.source.benchmark.file={RESOURCES}/dataset_manual_nl.jsonl")
    assert t.load_splits()["test"]["nl"] == ["Split a string on commas.", "Close a stream quietly."]  # no signature
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "dataset_autotest_nl.jsonl").write_text(lines(AUTOTEST[:2]) + "\n", encoding="utf-8")
    assert task(f"task.data_dir={flat}").load_splits()["test"]["id"] == [0, 3]


def test_rows_with_reference_code_are_scored_with_bleu(tmp_path):
    rows = [{**r, "code": f"int m{r['task_id']} ( int a ) {{ int b = a + 1 ; return b ; }}"} for r in AUTOTEST]
    benchmark(tmp_path / "repo", autotest=rows)
    t = task(f"task.data_dir={tmp_path / 'repo'}")
    test = t.load_splits()["test"]
    assert t.references(test) == [r["code"] for r in rows]
    scores = t.score(test, [r["code"] for r in rows])
    assert scores["syntax_valid"] == 100.0 and scores["exact_match"] == 100.0 and scores["bleu"] == pytest.approx(100.0)
    assert scores["codebleu"] == pytest.approx(1.0)   # identical methods with a data flow


def test_data_dir_with_splits_in_the_task_schema_is_read_as_every_task_reads_it(tmp_path):
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"id": 1, "nl": "add one", "code": "int f ( ) { }"}) + "\n")
    t = task(f"task.data_dir={tmp_path}")
    assert t.data_plan().kind == "data_dir" and len(t.load_splits()["test"]) == 1


@pytest.mark.parametrize("override,message", [
    ("task.source.shipped.splits.train.from=dataset_autotest_nl", "never trained or tuned on them"),
    ("task.source.splits.validation.from=dataset_autotest_nl", "never trained or tuned on them"),
    ("+task.source.shipped.splits.test={from: test}", "configures a test split"),
])
def test_training_on_the_benchmark_rows_is_refused(tmp_path, override, message):
    benchmark(tmp_path / "repo")
    with pytest.raises(DataError, match=message):
        task(f"task.data_dir={tmp_path / 'repo'}", override).data_plan()


# ---- malformed files: what, where, what was expected ------------------------------------------------
@pytest.mark.parametrize("line,message", [
    ('{"task_id": 5, "raw_nl": "x", "signature": "void f()"', r":2: invalid JSON .*expected one JSON object per line"),
    ('{"task_id": "5", "raw_nl": "x"}', r":2: field 'task_id' is str '5'; expected int"),
    ('{"task_id": 5, "signature": "void f()"}',
     r":2: field 'raw_nl' is missing; expected fields \['task_id', 'raw_nl'\]"),
    ('{"task_id": 5, "raw_nl": "x", "nl": "y"}', r":2: field 'nl' is not a field of the nl2code format"),
    ('{"task_id": 0, "raw_nl": "x"}', r":2: task_id 0 duplicates line 1"),
    ('[1, 2]', r":2: expected a JSON object, got list"),
])
def test_a_malformed_row_names_file_line_and_expectation(tmp_path, line, message):
    root = benchmark(tmp_path / "repo")
    path = root / RESOURCES / "dataset_autotest_nl.jsonl"
    path.write_text(lines(AUTOTEST[:1]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        task(f"task.data_dir={root}").load_splits()
    assert str(path) in str(err.value)


def test_missing_files_and_partial_references_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"not shipped.*task\.data_dir=DIR, a checkout of aixcoder-plugin/nl2code"):
        task().data_plan()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no src/main/resources/dataset_autotest_nl.jsonl; expected a checkout"):
        task(f"task.data_dir={tmp_path / 'empty'}").data_plan()
    rows = [{**AUTOTEST[0], "code": "int f ( ) { }"}, AUTOTEST[1]]
    root = benchmark(tmp_path / "repo", autotest=rows)
    with pytest.raises(DataError, match="task_id 3 has no reference `code` while task_id 0 has one"):
        task(f"task.data_dir={root}").load_splits()


def test_a_malformed_file_fails_the_cell_before_training(tmp_path, in_tmp):
    root = benchmark(tmp_path / "repo")
    (root / RESOURCES / "dataset_autotest_nl.jsonl").write_text('{"task_id": 1.5, "raw_nl": "x"}\n')
    result = run(compose(["task=nl2code", "model=tiny_t5", f"task.data_dir={root}", "trainer=smoke",
                          "tracker=none"]), in_tmp / "cell")
    assert result.status == "FAILED"
    assert "dataset_autotest_nl.jsonl:1: field 'task_id' is float 1.5; expected int" in result.reason


# ---- Java syntax validity (each case checked by hand) ------------------------------------------------
VALID = [
    "public static String createPadding(int length, char padChar) { StringBuilder sb = new StringBuilder(); "
    "for (int i = 0; i < length; i++) { sb.append(padChar); } return sb.toString(); }",
    "int function ( int arg0 ) { return arg0 + 1 ; }",                       # CONCODE's tokenised style
    "public <T> T initByReflect(String name, Object value, T t) throws Exception { Field f = "
    "t.getClass().getDeclaredField(name); f.setAccessible(true); f.set(t, value); return t; }",
    "int a() { return b(); } int b() { return 1; }",                         # a helper method too
    '/** doc */ @Override public String toString() { return "x"; }',        # comments and annotations
    "abstract void run();",                                                  # a bodiless method declaration
    "void f() {\n  // nothing to do\n}",
    "int f(int d) { return switch (d) { case 1 -> 2; default -> 0; }; }",   # Java 14
]
INVALID = [
    "", "   ",
    "public boolean isEmpty(String s) return s.isEmpty(); }",                # no `{` after the signature
    "int f() { return 1 }",                                                  # a missing `;`
    "int f(boolean x) { if (x) { return 1; }",                               # cut short: a missing `}`
    "void f() { } }",                                                        # a stray `}`
    "} class B { void f() { }",                                              # closes the wrapper class
    "return a + b;",                                                         # a statement, not a method
    "int count = 0;",                                                        # a field
    "createPadding(int length) { return null; }",                            # no return type
    "This method returns the sum of a and b.",
    "void f() { // done }",                                                  # the comment eats the `}`
]


@pytest.mark.parametrize("code", VALID)
def test_valid_methods(code):
    assert valid_method(code)


@pytest.mark.parametrize("code", INVALID)
def test_invalid_methods(code):
    assert not valid_method(code)


def test_the_official_era_grammar_misses_newer_java():
    assert valid_method(VALID[-1]) and not valid_method(VALID[-1], grammar="official")
    assert all(valid_method(c, grammar="official") for c in VALID[:-1])


# ---- the metric by hand -------------------------------------------------------------------------------
GOOD, BAD = "int f ( ) { return 1 ; }", "void g ( ) { return ; "


def test_without_references_only_syntax_validity():
    preds = [GOOD, BAD, VALID[2], INVALID[3]]
    assert metrics.compute("nl2code", [""] * 4, preds) == {"syntax_valid": 50.0}
    assert metrics.compute("nl2code", [""] * 4, preds, lang="java") == {"syntax_valid": 50.0}
    assert per_example("nl2code", [""] * 4, preds) == {"syntax_valid": [1.0, 0.0, 1.0, 0.0]}


def test_with_references_bleu_exact_match_and_codebleu():
    refs, preds = [GOOD, "void g ( ) { }"], [GOOD, BAD]
    out = metrics.compute("nl2code", refs, preds, lang="java")
    assert out["syntax_valid"] == 50.0 and out["exact_match"] == 50.0   # one of two, each
    text_to_code = metrics.compute("text_to_code", refs, preds, lang="java")
    assert {k: v for k, v in out.items() if k != "syntax_valid"} == text_to_code
    perfect = metrics.compute("nl2code", refs, refs)
    assert perfect == {"syntax_valid": 100.0, "bleu": pytest.approx(100.0), "exact_match": 100.0}


def test_partial_references_and_other_languages_are_errors():
    with pytest.raises(ValueError, match="1 of 2 references are empty"):
        metrics.compute("nl2code", [GOOD, ""], [GOOD, GOOD])
    with pytest.raises(ValueError, match="scores Java methods"):
        metrics.compute("nl2code", [""], [GOOD], lang="python")


@pytest.mark.parametrize("with_refs", [False, True])
def test_sufficient_stats_reproduce_compute_and_bound_the_interval(with_refs):
    rng = random.Random(0)
    preds = [rng.choice([GOOD, BAD, VALID[0], INVALID[2]]) for _ in range(40)]
    refs = [rng.choice([GOOD, VALID[0]]) for _ in preds] if with_refs else [""] * len(preds)
    st = sufficient_stats("nl2code", refs, preds, lang="java")
    whole = metrics.compute("nl2code", refs, preds, lang="java")
    summed = st.finalize(st.rows.sum(axis=0))
    assert set(summed) == set(whole)
    for key in ("syntax_valid", "bleu", "exact_match") if with_refs else ("syntax_valid",):
        assert summed[key] == pytest.approx(whole[key]), key
    if with_refs:  # CodeBLEU's parts: text_to_code's own statistics, columns 2 onwards
        own = sufficient_stats("text_to_code", refs, preds, lang="java")
        assert (st.rows[:, 2:] == own.rows).all()
        assert {k: v for k, v in summed.items() if k != "syntax_valid"} == own.finalize(own.rows.sum(axis=0))
    ci = confidence_interval("nl2code", refs, preds, n_resamples=200, seed=1, lang="java")
    assert set(ci) == set(whole)
    for key in ("syntax_valid", "bleu", "exact_match") if with_refs else ("syntax_valid",):
        lo, hi = ci[key]
        assert lo <= whole[key] + 1e-9 and whole[key] - 1e-9 <= hi, key
    assert paired_test("nl2code", refs, preds, [GOOD] * len(preds))["method"] == "mcnemar_exact"


def test_files_round_trip_and_the_benchmark_prediction_format(tmp_path):
    gold, pred = tmp_path / "answers.jsonl", tmp_path / "predictions.txt"
    write(gold, pred, [0, 3], [GOOD, "void g ( ) { }"], [GOOD, BAD])
    assert read(str(gold), str(pred)) == ([GOOD, "void g ( ) { }"], [GOOD, BAD])
    # the benchmark's own files: its dataset as the gold, a prediction.jsonl (rows matched by task_id)
    dataset = tmp_path / "dataset_autotest_nl.jsonl"
    dataset.write_text(lines(AUTOTEST) + "\n", encoding="utf-8")
    predicted = [{**r, "code": GOOD if r["task_id"] % 2 else BAD, "end_by": "end_token"} for r in reversed(AUTOTEST)]
    (tmp_path / "prediction.jsonl").write_text(lines(predicted) + "\n", encoding="utf-8")
    refs, preds = read(str(dataset), str(tmp_path / "prediction.jsonl"))
    assert refs == [""] * 4 and preds == [BAD, GOOD, GOOD, BAD]           # task ids 0, 3, 7, 12
    (tmp_path / "prediction.jsonl").write_text(lines(predicted[1:]) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match="missing prediction for task_id 12"):
        read(str(dataset), str(tmp_path / "prediction.jsonl"))
    pred.write_text(GOOD + "\n")
    with pytest.raises(FormatError, match="1 lines, but .* has 2"):
        read(str(gold), str(pred))


# ---- a whole cell ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,with_code", [("tiny_t5", False), ("tiny_llama", True)])
def test_cell_end_to_end_reports_splits_and_rescores(tmp_path, in_tmp, capsys, model, with_code):
    rows = [{**r, "code": "int f ( int a ) { return a ; }"} for r in AUTOTEST] if with_code else AUTOTEST
    root = benchmark(tmp_path / "repo", autotest=rows)
    cfg = compose(["task=nl2code", f"model={model}", f"task.data_dir={root}", "trainer=smoke", "tracker=none"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    saved = json.loads((in_tmp / "cell" / "result.json").read_text())
    assert saved["data"]["splits"] == {"train": 1795, "validation": 205, "test": 4}
    assert saved["primary_metric"] == "syntax_valid" and saved["primary_value"] == saved["metrics"]["syntax_valid"]
    keys = {"syntax_valid", "bleu", "exact_match", *metrics.CODEBLEU_KEYS} if with_code else {"syntax_valid"}
    assert set(saved["metrics"]) == keys and set(saved["confidence_intervals"]) == keys
    assert saved["naive_metrics"]["syntax_valid"] == 100.0   # CONCODE's most frequent program is a method
    benchmark_rows = [json.loads(x) for x in open(result.files["benchmark_predictions"], encoding="utf-8")]
    assert [r["task_id"] for r in benchmark_rows] == [0, 3, 7, 12]
    capsys.readouterr()
    assert metrics_main(["nl2code", "--gold", result.files["gold"], "--predictions", result.files["predictions"],
                         "--lang", "java"]) == 0
    assert json.loads(capsys.readouterr().out)["unrounded"] == pytest.approx(saved["metrics"])
