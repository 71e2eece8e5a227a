"""CodeBLEU against the official CodeXGLUE evaluator: the cases fixed, and the differences that remain.

The `official` numbers below were printed by the official calc_code_bleu.py (microsoft/CodeXGLUE,
Code-Code/code-to-code-trans/evaluator/CodeBLEU, its shipped parser/my-languages.so, tree_sitter
0.2.2, PYTHONHASHSEED=0) on exactly these strings; bench/bench_codebleu_parity.py reproduces them and
measures parity on 1,900 candidates built from real pairs (metrics/CODEBLEU.md).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from metrics.code_bleu import _parser, code_bleu
from metrics.codebleu_dataflow import data_flow

PARTS = ("ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match", "codebleu")


def _root(lang: str, code: str):
    return _parser(lang, "official").parse(code.encode()).root_node


def _close(ours: dict, official: dict, tol: float = 1e-9) -> bool:
    return all(abs(ours[k] - official[k]) <= tol for k in PARTS)


# ---- fixed: the official numbers exactly --------------------------------------------------------------
FIXED = {
    # literals are leaves: with 2 children per C# literal the data flow was empty (official: 5 of 5)
    "csharp_string_literal": ("c_sharp", 'public string F(int a){string b = "x" + a;return b;}',
                              'public string F(int a){string b = "x" + a;return b;}',
                              dict(ngram_match=1.0, weighted_ngram_match=1.0, syntax_match=1.0,
                                   dataflow_match=1.0, codebleu=1.0)),
    "csharp_constructor": ("c_sharp", "public CharVector(int capacity){if (capacity > 0) {this.capacity = capacity;}}",
                           "public CharVector(int size){if (size > 0) {this.capacity = size;}}",
                           dict(ngram_match=0.3549481056010053, weighted_ngram_match=0.36787632499277756,
                                syntax_match=1.0, dataflow_match=0.75, codebleu=0.6182061076484457)),
    "csharp_constructor_base": ("c_sharp", "public E(string m) : base(m){x = m;}", "public E(string m) : base(m){y = m;}",
                                dict(ngram_match=0.488923022434901, weighted_ngram_match=0.49616830003403634,
                                     syntax_match=1.0, dataflow_match=1.0, codebleu=0.7462728306172344)),
    "java_char_and_string_literals": ("java", "char f(char a){char b = 'x'; String s = \"y\" + a; return b;}",
                                      "char f(char a){char c = 'x'; String s = \"y\" + a; return c;}",
                                      dict(ngram_match=0.6997522298221912, weighted_ngram_match=0.7101217541093211,
                                           syntax_match=1.0, dataflow_match=1.0, codebleu=0.8524684959828781)),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_cases_equal_the_official_evaluator(name):
    lang, ref, cand, official = FIXED[name]
    ours = code_bleu([ref], [cand], lang)
    assert _close(ours, official), (ours, official)


def test_csharp_literal_has_its_data_flow():
    code = FIXED["csharp_string_literal"][1]
    assert len(data_flow(_root("c_sharp", code), code, "c_sharp")) == 5


@pytest.mark.parametrize("code", [FIXED["csharp_constructor"][1], FIXED["csharp_constructor_base"][1]])
def test_csharp_constructors_parse_as_constructors(code):
    tree = str(_root("c_sharp", code))
    assert tree.startswith("(compilation_unit (constructor_declaration") and "ERROR" not in tree, tree


# ---- the hash-seed order of the official data flow ----------------------------------------------------
def test_set_order_is_cpython_under_hash_seed_0():
    """cpython_set_order reproduces list(set(names)) of a CPython run with PYTHONHASHSEED=0 (the
    official runs' setting), names and sizes as the data flow meets them (table growth included)."""
    from metrics.codebleu_dfg import cpython_set_order, cpython_str_hash

    rng = random.Random(0)
    words = ["s", "i", "a", "b", "VAR_1", "loc0", "arg0", "this", "count", "x1", "résumé", "名前"]
    lists = [rng.sample(words, rng.randint(1, len(words))) for _ in range(40)]
    lists += [[f"v{rng.randint(0, 99)}" for _ in range(n)] for n in (5, 20, 60)]  # repeats, resizes
    code = ("import json,sys; L=json.loads(sys.stdin.read());"
            "print(json.dumps({'orders':[list(set(x)) for x in L],'hashes':[hash(w) for w in L[0]]}))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(lists), capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONHASHSEED="0")).stdout
    real = json.loads(out)
    assert [cpython_set_order(x) for x in lists] == real["orders"]
    assert [cpython_str_hash(w) - (1 << 64) * (cpython_str_hash(w) >= 1 << 63) for w in lists[0]] == real["hashes"]


def test_loop_parents_in_the_official_hash_order():
    """Walked twice, a loop merges s's parents {i, s}; the official list(set()) order under
    PYTHONHASHSEED=0 puts s first, and so does ours, whatever this process's hash seed."""
    from metrics.codebleu_dfg import cpython_set_order

    code = "void f ( ) { int s = 0 ; int i = 0 ; while ( i < 9 ) { s = i + s ; i = s ; } }"
    merged = [e for e in data_flow(_root("java", code), code, "java") if e[0] == "s" and e[2] == "computedFrom"]
    assert merged and all(e[3] == cpython_set_order(["i", "s"]) for e in merged), merged


# ---- the differences that remain (metrics/CODEBLEU.md), today's behaviour pinned ----------------------
# Java parses with tree-sitter-java 0.19.1, the official library with a mid-2020 master snapshot that no
# registry has. On code that is not a valid Java program the two recover from the syntax error
# differently, so syntax_match (only it) differs; n-gram parts and data flow are equal.
REMAINING = {
    # a top-level method is not a Java program; the official snapshot swallows `throws T {` into an
    # ERROR and drops the body, 0.19.1 keeps T as a statement and the body as a block
    "throws_clause": ("java", "public boolean METHOD_1 ( ) throws TYPE_1 { return METHOD_2 ( ) ; }",
                      "public void METHOD_1 ( ) throws TYPE_1 { if ( METHOD_2 ( ) ) { throw new TYPE_1 ( STRING_1 ) ; } }",
                      0.7, 0.6363636363636364),
    # `( ( VAR_4 ) + ( ... ) )`: the snapshot reads `(VAR_4) +(...)` as a cast of a unary plus, 0.19.1 as
    # a binary sum (the cast rule changed between them)
    "cast_or_sum": ("java", "public int METHOD_1 ( int VAR_1 ) { int VAR_2 = VAR_3 . getInt ( ( ( VAR_4 ) + ( VAR_1 * ( VAR_5 ) ) ) ) ; return VAR_2 ; }",
                    "public int METHOD_1 ( int VAR_1 ) { int VAR_2 = VAR_3 . getInt ( ( ( VAR_4 )  ) ) ) ) ; return VAR_2 ; }",
                    0.5, 0.5454545454545454),
    # a truncated candidate: the snapshot keeps the root a `program`, 0.19.1 makes it an ERROR
    "truncated": ("java", "public ListClusterJobsResult listClusterJobs(ListClusterJobsRequest request) {request = beforeClientExecution(request);return executeListClusterJobs(request);}",
                  "public ListClusterJobsResult listClusterJobs(ListClusterJobsRequest request) {request = beforeClientExecution(request);return executeListClusterJobs(request);return",
                  0.8, 0.8666666666666667),
    # a stray leading `}`: the snapshot wraps the whole method head in one ERROR, 0.19.1 reads a declaration
    "leading_junk": ("java", "public DescribeLocationsResult describeLocations() {return describeLocations(new DescribeLocationsRequest());}",
                     "} DescribeLocationsResult describeLocations() {return describeLocations(new DescribeLocationsRequest())return(",
                     0.4166666666666667, 0.5),
}


@pytest.mark.parametrize("name", sorted(REMAINING))
def test_remaining_differences_are_syntax_only(name):
    lang, ref, cand, official_syntax, our_syntax = REMAINING[name]
    ours = code_bleu([ref], [cand], lang)
    assert ours["syntax_match"] == pytest.approx(our_syntax, abs=1e-12), ours
    assert ours["syntax_match"] != pytest.approx(official_syntax, abs=1e-6)  # still differs: update CODEBLEU.md if not
    diff = 0.25 * (ours["syntax_match"] - official_syntax)  # the only part that differs, weight 0.25
    assert 0.005 < abs(diff) < 0.05
