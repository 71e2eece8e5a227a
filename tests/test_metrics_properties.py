"""Cross-checks of the metrics against their definitions: hand-computed cases and property tests."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics import METRIC_KEYS, compute, round_official, round_value
from metrics.bleu import code_to_text_bleu, corpus_bleu, nist_normalize
from metrics.completion import fuzz_ratio, post_process
from metrics.retrieval import gold_ranks, rank_by_similarity

FAST = settings(max_examples=60, deadline=None)
tokens = st.lists(st.sampled_from(list("abcde")), min_size=1, max_size=12)


def ref_compute_bleu(refs: list[list[str]], hyps: list[list[str]]) -> float:
    """Direct transcription of the TF-NMT definition, smooth=True, max_order=4."""
    m, p, rl, hl = [0] * 4, [0] * 4, 0, 0
    for r, h in zip(refs, hyps):
        rl += len(r)
        hl += len(h)
        for n in range(1, 5):
            hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            m[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            p[n - 1] += max(len(h) - n + 1, 0)
    prec = [(a + 1) / (b + 1) for a, b in zip(m, p)]
    geo = math.exp(sum(math.log(x) / 4 for x in prec))
    ratio = hl / rl
    return 100 * geo * (1.0 if ratio > 1 else math.exp(1 - 1 / ratio))


@FAST
@given(st.lists(st.tuples(tokens, tokens), min_size=1, max_size=6))
def test_corpus_bleu_matches_definition(pairs):
    refs = [r for r, _ in pairs]
    hyps = [h for _, h in pairs]
    ours = corpus_bleu([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    assert ours == pytest.approx(ref_compute_bleu(refs, hyps), rel=1e-12)


def test_corpus_bleu_hand_case():
    # identical 4-token pair: every precision (k+1)/(k+1)=1 -> 100; BLEU of "a b" vs "a b c d":
    assert corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)
    # matches 2,1,0,0 of possible 2,1,0,0 -> precisions 1,1,1,1, bp = exp(1 - 4/2)
    assert corpus_bleu(["a b c d"], ["a b"]) == pytest.approx(100 * math.exp(-1))


@FAST
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_prf_matches_sklearn(pairs):
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
    import warnings
    y, p = [int(a) for a, _ in pairs], [int(b) for _, b in pairs]
    out = compute("nl_code_search_webquery", y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert out["f1"] == f1_score(y, p)
        assert out["precision"] == precision_score(y, p)
        assert out["recall"] == recall_score(y, p)
    assert out["accuracy"] == accuracy_score(y, p)


def test_bool_targets_equal_ints():
    assert compute("defect_detection", [True, False, True], [1, 0, 0])["accuracy"] == pytest.approx(2 / 3)


def test_mrr_hand_computed():
    # gold ranks 1, 3, absent -> (1 + 1/3 + 0) / 3
    out = compute("nl_code_search_adv", [5, 7, 9], [[5, 1], [1, 2, 7], [1, 2]])
    assert out["mrr"] == pytest.approx((1 + 1 / 3) / 3)


def test_map_at_r_hand_computed():
    # labels a a a b b b: item 0 (R=2) ranked [1, 3] -> (1/1)/2 = 0.5 ; item 1 ranked [3, 0] -> (1/2)/2
    labels = ["a", "a", "a", "b", "b", "b"]
    preds = [[1, 3], [3, 0], [0, 1], [4, 5], [3, 4], [0, 3]]
    per = [0.5, 0.25, 1.0, 1.0, 0.5, (1 / 2) / 2]
    assert compute("clone_detection_poj104", labels, preds)["map_at_r"] == pytest.approx(np.mean(per))
    with pytest.raises(ValueError, match="exactly R"):
        compute("clone_detection_poj104", labels, [[1]] + preds[1:])


def test_token_accuracy_skips_special_gold_tokens():
    out = compute("code_completion_token", [["<s>", "a", "<EOL>", "b", "</s>", "<pad>"]], [["x", "a", "y", "c", "z", "w"]])
    assert out == {"token_accuracy": 50.0, "total_tokens": 2}
    with pytest.raises(ValueError, match="token count"):
        compute("code_completion_token", [["a", "b"]], [["a"]])


@FAST
@given(st.text(alphabet="ab c<>", max_size=12), st.text(alphabet="ab c<>", max_size=12))
def test_edit_sim_is_levenshtein_ratio_half_even(a, b):
    from rapidfuzz.distance import Indel
    if a == b:
        expect = 100
    elif not a or not b:
        expect = 0
    else:
        expect = round(100 * Indel.normalized_similarity(a, b))  # Python round: half to even
    assert fuzz_ratio(a, b) == expect


def test_edit_sim_half_even_case():
    # lensum 8, distance 3 -> ratio 0.625 -> 62.5 -> 62 (half to even), not 63
    assert fuzz_ratio("abcd", "abce") == 75
    assert fuzz_ratio("aaaa", "aaab") == 75
    assert fuzz_ratio("a", "") == 0 and fuzz_ratio("", "") == 100
    assert round(100 * (8 - 3) / 8) == 62


def test_line_post_processing():
    assert post_process('x = <NUM_LIT> + <NUM_LIT:5> + "<STR_LIT>" + <STR_LIT:hi>') == 'x = 0 + 5 + "" + hi'
    out = compute("code_completion_line", ["a = <NUM_LIT:1>"], ["a = 1 "])
    assert out == {"exact_match": 100.0, "edit_sim": 100.0}


def test_code_to_text_normalisation_and_skips():
    assert nist_normalize("A &quot;b&quot; 1.5, x.y") == ['a', '"', 'b', '"', '1.5', ',', 'x', '.', 'y']
    out = code_to_text_bleu(["returns the value", ["a b", "c d"]], ["Returns the value", None])
    assert out["total"] == 1 and out["skipped"] == 1
    assert out["bleu"] == pytest.approx(100.0)


def test_code_to_text_empty_prediction_is_not_zero():
    out = code_to_text_bleu(["one two three"], [""])
    # log bleu = (log(tiny) - log(tiny) + 3*(log 1 - log 1))/4 + (1 - 4/1) -> exp(-3)
    assert out["bleu"] == pytest.approx(100 * math.exp(-3))


def test_generation_exact_match_variants():
    refs, preds = ["a  b"], ["a b"]
    assert compute("code_refinement", refs, preds)["exact_match"] == 0.0  # internal whitespace matters
    assert compute("text_to_code", refs, preds)["exact_match"] == 100.0  # token lists


def test_rounding_official():
    assert round_value("bleu", 79.025) == round(79.025, 2)
    assert round_value("map_at_r", 0.58335) == float(np.round(np.float64(0.58335), 4))
    assert round_official("code_to_text", {"bleu": 9.554726113590661})["bleu"] == 9.554726113590661
    assert set(METRIC_KEYS) >= {
        "clone_detection_big_clone_bench", "clone_detection_poj104", "defect_detection", "code_completion_token",
        "code_completion_line", "code_refinement", "code_to_code_trans", "text_to_code", "code_to_text",
        "nl_code_search_adv", "nl_code_search_webquery", "nl2code"}


def test_rank_by_similarity_matches_dense_argsort():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(37, 8)), rng.normal(size=(101, 8))
    full = np.argsort(-(q.astype(np.float32) @ c.astype(np.float32).T), axis=1, kind="stable")
    assert (rank_by_similarity(q, c, top_k=None, chunk_size=10) == full).all()
    assert (rank_by_similarity(q, c, top_k=5, chunk_size=7) == full[:, :5]).all()
    gold = rng.integers(0, 101, size=37)
    ranks = gold_ranks(q, c, gold, chunk_size=9)
    assert (ranks == np.argmax(full == gold[:, None], axis=1) + 1).all()


def test_codebleu_identical_pair_is_one():
    code = "public int f ( int a ) { int b = a + 1 ; return b ; }"
    out = compute("code_refinement", [code], [code], lang="java")
    for k in ("codebleu", "ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match"):
        assert out[k] == pytest.approx(1.0)


@pytest.mark.parametrize("lang,code", [
    ("python", "def f(a):\n    b = a + 1\n    return b"),
    ("c_sharp", "public int F(int a){int b = a + 1; return b;}"),
    ("javascript", "function f(a) { let b = a + 1; return b; }"),
    ("go", "func f(a int) int { b := a + 1; return b }"),
    ("php", "<?php function f($a) { $b = $a + 1; return $b; }"),
    ("ruby", "def f(a)\n  b = a + 1\n  b\nend"),
])
def test_codebleu_other_languages(lang, code):
    out = compute("code_to_code_trans", [code], [code.replace("1", "2")], lang=lang)
    # a changed literal keeps every AST shape (s-expressions hold no leaf text) but not the n-grams
    assert 0 < out["codebleu"] < 1 and out["ngram_match"] < 1 and out["syntax_match"] == 1.0


def test_codebleu_comments_removed_with_java_rules():
    # a // comment in the candidate is removed before parsing: syntax unchanged
    a = compute("code_refinement", ["int f ( ) { return 1 ; }"], ["int f ( ) { return 1 ; }"], lang="java")
    b = compute("code_refinement", ["int f ( ) { return 1 ; }"], ["int f ( ) { /* x */ return 1 ; }"], lang="java")
    assert a["syntax_match"] == b["syntax_match"] == 1.0


# ---- CodeBLEU structure parts, hand-checked against the official semantics (METRICS.md) ----
def _root(lang: str, code: str):
    from metrics.code_bleu import _parser
    return _parser(lang, "official").parse(code.encode()).root_node


def test_codebleu_syntax_counts_by_hand():
    from metrics.codebleu_syntax import syntax_counts
    # (module (expression_statement (assignment left: (identifier) right: (identifier)))): 3 subtrees
    # with children; a = c has the same three s-expressions, a = 1 none of them (right: (integer))
    assert syntax_counts(_root("python", "a = b"), _root("python", "a = c"), str) == (3, 3)
    assert syntax_counts(_root("python", "a = b"), _root("python", "a = 1"), str) == (0, 3)


def test_codebleu_java_dataflow_by_hand():
    from metrics.codebleu_dataflow import data_flow, normalize_dataflow
    code = "int f ( int a ) { int b = a + 1 ; a = b ; return a ; }"
    # tokens: int0 f1 MISSING;2 (3 int4 a5 )6 {7 int8 b9 =10 a11 +12 1(13) ;14 a15 =16 b17 ;18 return19 a20
    # f takes part in no flow (dropped); b's two declarator edges (from a and from 1) merge at position 9,
    # parents in the official list(set()) order of PYTHONHASHSEED=0 (tests/test_codebleu_parity.py)
    assert [e[:4] for e in data_flow(_root("java", code), code, "java")] == [
        ("a", 5, "comesFrom", []), ("b", 9, "comesFrom", ["a", "1"]), ("a", 11, "comesFrom", ["a"]),
        ("1", 13, "comesFrom", []), ("a", 15, "computedFrom", ["b"]), ("b", 17, "comesFrom", ["b"]),
        ("a", 20, "comesFrom", ["a"])]
    assert normalize_dataflow(data_flow(_root("java", code), code, "java"))[:2] == [
        ("var_0", "comesFrom", []), ("var_2", "comesFrom", ["var_0", "var_1"])]


def test_codebleu_dataflow_matching_is_clipped():
    from metrics.codebleu_dataflow import dataflow_counts
    ref = [("x", 0, "comesFrom", [], []), ("y", 1, "comesFrom", [], [])]  # two identical normalised edges
    assert dataflow_counts(ref, ref[:1]) == (1, 2)
    assert dataflow_counts(ref, ref) == (2, 2)
    assert dataflow_counts([], ref) == (0, 0)


def test_codebleu_too_deep_code_has_no_dataflow_like_official():
    from metrics.codebleu_dataflow import data_flow
    code = "int x = " + "(" * 1200 + "y" + ")" * 1200 + " ; int z = x ;"
    assert data_flow(_root("java", code), code, "java") == []  # official: RecursionError -> no data flow
    code = "int x = " + "(" * 50 + "y" + ")" * 50 + " ; int z = x ;"
    assert data_flow(_root("java", code), code, "java")


def test_codebleu_official_grammars_missing_is_a_clear_error(tmp_path, monkeypatch):
    from metrics import legacy_grammars
    monkeypatch.setenv("CODEBLEU_GRAMMARS_DIR", str(tmp_path))
    with pytest.raises(legacy_grammars.GrammarsMissing, match="metrics.legacy_grammars build"):
        legacy_grammars.language("java", build_if_missing=False)
    with pytest.raises(ValueError, match="grammar='modern'"):
        legacy_grammars.language("rust")


def test_codebleu_grammar_option():
    from metrics.code_bleu import code_bleu
    code = "public int f ( int a ) { int b = a + 1 ; return b ; }"
    for grammar in ("official", "modern"):
        assert code_bleu([code], [code], "java", grammar=grammar)["codebleu"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown"):
        code_bleu([code], [code], "java", grammar="2019")
