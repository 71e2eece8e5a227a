"""Syntax validity of generated code: the share of outputs that parse without an ERROR or MISSING
node, with the tree-sitter grammars CodeBLEU already uses (the pinned "modern" wheels).

A reference-free companion to the official metrics (it never replaces one), reported as
`syntax_valid_rate` (0-1) by every task whose YAML names a `syntax_language`. CodeXGLUE's code
outputs are members, not compilation units (a CONCODE method, a refined or translated Java/C#
method), so Java and C# outputs are parsed inside a class body (`class _W {` ... `}`), as
AixBench's harness does; other languages parse as they are. The tokenised spacing of CodeXGLUE's
files (`public int f ( ) {`) parses like ordinary code. An empty output is not valid.
"""
from __future__ import annotations

from typing import Sequence

from .aixbench import WRAPPER, _broken
from .code_bleu import LANGS, _parser

WRAPPERS = {"java": WRAPPER, "c_sharp": WRAPPER}  # a member needs a class body around it
KEY = "syntax_valid_rate"


def check_language(language: str) -> str:
    if language not in LANGS:
        raise ValueError(f"syntax_language={language!r}: no tree-sitter grammar; expected one of {', '.join(LANGS)}")
    return language


def flags(predictions: Sequence[str], language: str) -> list[bool]:
    """Per output: parses without an error node (inside its wrapper)."""
    parser = _parser(check_language(language), "modern")
    head, tail = WRAPPERS.get(language, ("", ""))
    return [bool(str(p).strip()) and not _broken(parser.parse((head + str(p) + tail).encode("utf-8")).root_node)
            for p in predictions]


def valid_rate(predictions: Sequence[str], language: str) -> float:
    if not predictions:
        raise ValueError("syntax validity: no predictions to check")
    marks = flags(predictions, language)
    return sum(marks) / len(marks)
