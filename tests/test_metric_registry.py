"""One metric registry (metrics/registry.py): complete specs, gaps caught at import, no fall-back."""
from __future__ import annotations

import dataclasses

import pytest

import metrics
from metrics.bootstrap import sufficient_stats
from metrics.registry import SPECS, RegistryError, _validate, bounds, per_example, spec


def test_every_table_is_derived_from_the_specs():
    assert set(metrics.TASKS) == set(SPECS) and len(SPECS) >= 12 and "nl2code" in SPECS
    for name, s in SPECS.items():
        assert metrics.METRIC_KEYS[name] == s.keys and metrics.PRIMARY_KEY[name] == s.primary
        assert all(low < high for low, high in s.bounds.values())


@pytest.mark.parametrize("broken,message", [
    (dict(primary="nope"), "primary 'nope' is not among keys"),
    (dict(rounding={}), "no rounding rule for"),
    (dict(bounds={}), "no range for"),
    (dict(read=None), "read is not callable"),
    (dict(features={"predictions": "float"}), "unknown input type 'float'"),
    (dict(examples={}), "no per-example score"),
])
def test_an_incomplete_spec_is_an_error(broken, message):
    bad = dataclasses.replace(spec("defect_detection"), **broken)
    with pytest.raises(RegistryError, match=message):
        _validate({"defect_detection": bad})


@pytest.mark.parametrize("call", [
    lambda: metrics.compute("clone_detection", [1], [1]),
    lambda: sufficient_stats("bleu", ["a"], ["a"]),
    lambda: spec("code_to_txt"),
])
def test_an_unknown_metric_is_an_error_not_bleu(call):
    with pytest.raises(ValueError, match="unknown metric"):
        call()


def test_bounds_and_per_example_scores_come_from_the_spec():
    assert bounds("defect_detection", "accuracy") == (0.0, 1.0)
    assert bounds("code_refinement", "bleu") == (0.0, 100.0)
    assert bounds("code_refinement", "codebleu") == (0.0, 1.0)   # the optional CodeBLEU keys
    assert per_example("defect_detection", [1, 0, 1], [1, 1, 1]) == {"correct": [1.0, 0.0, 1.0]}
    assert per_example("code_refinement", ["a b", "c"], ["a b", "d"]) == {"exact_match": [1.0, 0.0]}


@pytest.mark.parametrize("name,refs,preds", [
    ("code_to_code_trans", ["int a = 1 ;", "return x ;"], ["int a = 2 ;", "return x ;"]),
    ("text_to_code", ["int f ( ) { }", "void g ( ) { }"], ["int f ( ) { }", "void h ( ) { }"]),
    ("code_completion_line", ["x = 1", "return y"], ["x = 2", "return y"]),
    ("defect_detection", [0, 1, 1], [0, 0, 1]),
    ("nl_code_search_webquery", [0, 1, 1], [1, 1, 1]),
])
def test_each_spec_reads_back_what_it_writes(tmp_path, name, refs, preds):
    s = spec(name)
    gold, pred = tmp_path / f"answers.{s.gold_ext}", tmp_path / "predictions.txt"
    s.write(gold, pred, list(range(len(refs))), refs, preds)
    assert s.read(str(gold), str(pred)) == (refs, preds)
    assert metrics.compute(name, *s.read(str(gold), str(pred))) == metrics.compute(name, refs, preds)


def test_codebleu_statistics_equal_compute_when_outputs_are_short():
    """The bootstrap's CodeBLEU statistics reproduce compute() also where the weighted n-gram part's
    brevity penalty bites (outputs shorter than their references; the official reference length quirk)."""
    refs = ["public int f ( int a ) { return a + 1 ; }", "int g ( ) { int x = 1 ; return x ; }"]
    preds = ["public int f ( int a ) {", "int g ( )"]
    stats = sufficient_stats("code_to_code_trans", refs, preds, lang="java")
    ours = stats.finalize(stats.rows.sum(axis=0))
    expected = metrics.compute("code_to_code_trans", refs, preds, lang="java")
    for key in ("codebleu", "weighted_ngram_match", "ngram_match"):
        assert abs(ours[key] - expected[key]) < 1e-12, key
