"""CodeBLEU comment removal, token walking and syntax_match with the official CodeXGLUE semantics
(stdlib only).

Written from METRICS.md and the behaviour of CodeXGLUE's calc_code_bleu.py (syntax_match.py,
parser/utils.py); no code of theirs is copied. This module imports no tree_sitter: it walks any node
object with .type, .children, .start_point and .end_point, and takes the s-expression function as an
argument, so the same code serves the official-era grammars (metrics/legacy_grammars.py) and the modern
pinned ones. The data-flow half lives in metrics/codebleu_dfg.py and metrics/codebleu_dataflow.py.

Official quirks reproduced on purpose (they change numbers):
  * comments are removed with the Java/C regex for every language;
  * a leaf is a node without children or of type `string`, except `comment` (the data-flow walker has
    its own, wider leaf rule: see codebleu_dfg.py).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

_COMMENT_RE = re.compile(r'//.*?$|/\*.*?\*/|\'(?:\\.|[^\\\'])*\'|"(?:\\.|[^\\"])*"', re.DOTALL | re.MULTILINE)


def remove_comments_java_rules(source: str) -> str:
    """Official remove_comments_and_docstrings(source, 'java'): // and /* */ -> ' ', drop blank lines."""
    text = _COMMENT_RE.sub(lambda m: " " if m.group(0).startswith("/") else m.group(0), source)
    return "\n".join(line for line in text.split("\n") if line.strip() != "")


# ------------------------------------------------------------------ syntax match
def subtree_sexps(root: Any, sexp: Callable[[Any], str]) -> list[str]:
    """S-expressions of the root and of every descendant that has children (official traversal)."""
    out: list[str] = []
    stack = [root]
    while stack:
        node = stack.pop()
        out.append(sexp(node))
        stack.extend(c for c in node.children if len(c.children) != 0)
    return out


def syntax_counts(ref_root: Any, cand_root: Any, sexp: Callable[[Any], str]) -> tuple[int, int]:
    """(reference subtrees that occur in the candidate, reference subtrees)."""
    ref = subtree_sexps(ref_root, sexp)
    cand = set(subtree_sexps(cand_root, sexp))
    return sum(s in cand for s in ref), len(ref)


# ------------------------------------------------------------------ tokens
LEAF_TYPES = ("string_literal", "string", "character_literal")


def is_token(node: Any) -> bool:
    return (len(node.children) == 0 or node.type in LEAF_TYPES) and node.type != "comment"


def token_spans(root: Any) -> list[tuple]:
    """(start_point, end_point) of every token, in code order (official tree_to_token_index)."""
    if is_token(root):
        return [(tuple(root.start_point), tuple(root.end_point))]
    out: list[tuple] = []
    for child in root.children:
        out += token_spans(child)
    return out


def span_text(span: tuple, lines: Sequence[str]) -> str:
    (r0, c0), (r1, c1) = span
    if r0 == r1:
        return lines[r0][c0:c1]
    # official index_to_code_token: the lines are joined without their newlines
    return lines[r0][c0:] + "".join(lines[r0 + 1:r1]) + lines[r1][:c1]
