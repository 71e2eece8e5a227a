"""CodeBLEU data-flow extraction and dataflow_match with the official CodeXGLUE semantics, and the
per-pair syntax + data-flow counts (stdlib only).

Written from METRICS.md and the behaviour of CodeXGLUE's calc_code_bleu.py (dataflow_match.py,
parser/utils.py); no code of theirs is copied. The per-language walk is metrics/codebleu_dfg.py, the
comment removal, tokens and syntax match metrics/codebleu_syntax.py; like them, this module imports no
tree_sitter and takes the parse and s-expression functions as arguments.

Where several edges share a position their parent names are merged in the order the official
list(set(...)) gives under PYTHONHASHSEED=0 (see codebleu_dfg.py), so the result is the same on every
hash seed of this process.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Sequence

from .codebleu_dfg import DFGWalker
from .codebleu_syntax import remove_comments_java_rules, span_text, syntax_counts, token_spans

OFFICIAL_LANGS = ("java", "c_sharp", "python", "javascript", "go", "php", "ruby")


# The official walks recurse once per tree level under Python's default recursion limit (1000) with 3
# frames below them: deeper code raises RecursionError there, which the official script turns into "no
# data flow". Reproduced by this depth check; our own walk runs under a higher limit.
_OFFICIAL_MAX_DEPTH = 997


def _depth(root: Any) -> int:
    """Nodes on the longest root-to-leaf path."""
    best, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in node.children)
    return best


def data_flow(root: Any, code: str, lang: str) -> list[tuple]:
    """Official get_data_flow: the DFG edges of variables that take part in a flow, merged per position.
    Any error while tokenising or walking (e.g. RecursionError, a token the walker cannot look up)
    gives no data flow, as in the official script."""
    if _depth(root) > _OFFICIAL_MAX_DEPTH:
        return []
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * _OFFICIAL_MAX_DEPTH + 200))
    try:
        return _data_flow(root, code, lang)
    finally:
        sys.setrecursionlimit(limit)


def _data_flow(root: Any, code: str, lang: str) -> list[tuple]:
    try:
        spans = token_spans(root)
        lines = code.split("\n")
        index_to_code = {span: (i, span_text(span, lines)) for i, span in enumerate(spans)}
        walker = DFGWalker(lang, index_to_code)
        try:
            dfg, _ = walker.walk(root, {})
        except Exception:
            dfg = []
        dfg = sorted(dfg, key=lambda e: e[1])
        used: set[int] = set()
        for e in dfg:
            if e[-1]:
                used.add(e[1])
            used.update(e[-1])
        dfg = [e for e in dfg if e[1] in used]
    except Exception:
        return []
    merged: dict[int, tuple] = {}
    for e in dfg:
        if e[1] in merged:
            old = merged[e[1]]
            positions = old[4] + e[4]
            merged[e[1]] = (e[0], e[1], e[2], walker.order_names(old[3] + e[3], positions), sorted(set(positions)))
        else:
            merged[e[1]] = e
    return list(merged.values())


def normalize_dataflow(dfg: Sequence[tuple]) -> list[tuple]:
    """Rename variables var_0, var_1, ... in order of appearance (parents before the variable)."""
    names: dict[str, str] = {}
    out = []
    for var, _, rel, parents, _ in dfg:
        for n in list(parents) + [var]:
            names.setdefault(n, f"var_{len(names)}")
        out.append((names[var], rel, [names[n] for n in parents]))
    return out


def dataflow_counts(ref_dfg: Sequence[tuple], cand_dfg: Sequence[tuple]) -> tuple[int, int]:
    """(matched reference edges, reference edges), each candidate edge used once."""
    cand = normalize_dataflow(cand_dfg)
    ref = normalize_dataflow(ref_dfg)
    matched = 0
    for edge in ref:
        if edge in cand:
            matched += 1
            cand.remove(edge)
    return matched, len(ref)


def pair_counts(parse: Callable[[str], Any], sexp: Callable[[Any], str], lang: str,
                pairs: Iterable[tuple[str, str]], dataflow: bool = True) -> list[list[int]]:
    """[syntax matched, syntax total, dataflow matched, dataflow total] per (reference, candidate); the
    texts are stripped already, comments are removed here (Java rules, every language)."""
    out = []
    for reference, candidate in pairs:
        ref_code, cand_code = remove_comments_java_rules(reference), remove_comments_java_rules(candidate)
        ref_root, cand_root = parse(ref_code), parse(cand_code)
        sm, st = syntax_counts(ref_root, cand_root, sexp)
        dm = dt = 0
        if dataflow:
            dm, dt = dataflow_counts(data_flow(ref_root, ref_code, lang), data_flow(cand_root, cand_code, lang))
        out.append([sm, st, dm, dt])
    return out
