"""The per-language CodeBLEU data-flow walker with the official CodeXGLUE semantics (stdlib only).

Written from METRICS.md and the behaviour of CodeXGLUE's calc_code_bleu.py (dataflow_match.py,
parser/DFG.py); no code of theirs is copied. Like metrics/codebleu_syntax.py it imports no tree_sitter
and walks any node object with .type, .children, .start_point, .end_point and .child_by_field_name.
metrics/codebleu_dataflow.py runs it over a parsed code and matches the resulting edges.

Official quirks reproduced on purpose (they change numbers):
  * the data-flow walker treats `string_literal` / `character_literal` as leaves, besides the token
    leaves of codebleu_syntax.is_token, so a grammar where those have children makes the token lookup
    fail, and the official script then scores that code as having no data flow (same here: any error
    inside a walk means "no data flow" for that code);
  * JavaScript counts `assignment_pattern`, not `assignment_expression`, as an assignment; PHP's if
    does not add the pre-if states when there is no else; Ruby shares the states dict between a node
    and its children (only leaves copy it); loops are walked twice; etc. (tables below).

Where the official code merges the parent-variable names of an edge with `list(set(names))` (inside
loops, and when several edges share a position), the resulting order depends on PYTHONHASHSEED, and it
changes the data-flow score (the names are numbered var_0, var_1, ... in that order). Here that order
is computed, not left to this process's own hash seed: `cpython_set_order` is the order CPython 3.11+
gives under PYTHONHASHSEED=0, the setting of the golden official runs (str hash = SipHash-1-3 with a
zero key, then CPython's set table: 8 slots, linear probing of 9 slots, perturbed probing, growth at
3/5 full). So the result is the official PYTHONHASHSEED=0 one, the same on every hash seed of ours.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable

from .codebleu_syntax import is_token

# What each official DFG_<lang> treats specially; checked in this order: leaf, definition, assignment,
# increment, if, for, foreach, while, anything else (children in order; `first` types before the rest).
_SPEC: dict[str, dict[str, Any]] = {
    "python": dict(definition=("default_parameter",), value_field="value", assignment=(
        "assignment", "augmented_assignment", "for_in_clause"), assign_style="zip", increment=(),
        if_=("if_statement",), if_style="clauses", for_=("for_statement",), for_style="python",
        foreach=(), while_=("while_statement",), first=("for_in_clause",), copy_states=True),
    "java": dict(definition=("variable_declarator",), value_field="value", assignment=("assignment_expression",),
                 assign_style="pairs", increment=("update_expression",), if_=("if_statement", "else"),
                 if_style="flag", if_keep_before="if_no_else", for_=("for_statement",), for_style="init",
                 for_init="local_variable_declaration", foreach=("enhanced_for_statement",),
                 foreach_fields=("name", "value"), while_=("while_statement",), first=(), copy_states=True),
    "c_sharp": dict(definition=("variable_declarator",), value_field=None, assignment=("assignment_expression",),
                    assign_style="pairs", increment=("postfix_unary_expression",), if_=("if_statement", "else"),
                    if_style="flag", if_keep_before="if_no_else", for_=("for_statement",), for_style="init",
                    for_init="local_variable_declaration", foreach=("for_each_statement",),
                    foreach_fields=("left", "right"), while_=("while_statement",), first=(), copy_states=True),
    "ruby": dict(definition=("keyword_parameter",), value_field="value", assignment=("assignment", "operator_assignment"),
                 assign_style="zip_ruby", increment=(), if_=("if", "elsif", "else", "unless", "when"),
                 if_style="types", for_=("for",), for_style="ruby", foreach=(),
                 while_=("while_modifier", "until"), first=(), copy_states=False),
    "go": dict(definition=("var_spec",), value_field="value", assignment=("assignment_statement",),
               assign_style="pairs", increment=("inc_statement",), if_=("if_statement", "else"), if_style="flag",
               if_keep_before="always_and_if_no_else", for_=("for_statement",), for_style="go", foreach=(),
               while_=(), first=(), copy_states=True),
    "php": dict(definition=("simple_parameter",), value_field="default_value",
                assignment=("assignment_expression", "augmented_assignment_expression"), assign_style="pairs",
                increment=("update_expression",), if_=("if_statement", "else_clause"), if_style="flag",
                if_keep_before="always", for_=("for_statement",), for_style="init", for_init="assignment_expression",
                foreach=("foreach_statement",), foreach_fields="php", while_=("while_statement",), first=(),
                copy_states=True),
    "javascript": dict(definition=("variable_declarator",), value_field="value",
                       assignment=("assignment_pattern", "augmented_assignment_expression"), assign_style="pairs",
                       increment=("update_expression",), if_=("if_statement", "else"), if_style="flag",
                       if_keep_before="always_and_if_no_else", for_=("for_statement",), for_style="init",
                       for_init="variable_declaration", foreach=(), while_=("while_statement",), first=(),
                       copy_states=True),
}
_LEAF_TYPES = ("string_literal", "string", "character_literal")


# ------------------------------------------------------------------ CPython's list(set(strings)), PYTHONHASHSEED=0
_M64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def _siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (CPython 3.11+'s str hash, Python/pyhash.c), 64-bit unsigned result."""
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def rnd(v0, v1, v2, v3):
        v0 = (v0 + v1) & _M64; v2 = (v2 + v3) & _M64  # noqa: E702
        v1 = _rotl(v1, 13) ^ v0; v3 = _rotl(v3, 16) ^ v2  # noqa: E702
        v0 = _rotl(v0, 32)
        v2 = (v2 + v1) & _M64; v0 = (v0 + v3) & _M64  # noqa: E702
        v1 = _rotl(v1, 17) ^ v2; v3 = _rotl(v3, 21) ^ v0  # noqa: E702
        v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    n = len(data)
    full = n - n % 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
        v0 ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[full:], "little")
    v3 ^= b
    v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@functools.lru_cache(maxsize=65536)
def cpython_str_hash(s: str) -> int:
    """hash(s) in CPython 3.11+ run with PYTHONHASHSEED=0 (as an unsigned 64-bit number)."""
    if not s:
        return 0
    top = max(map(ord, s))
    data = s.encode("latin-1") if top < 0x100 else s.encode("utf-16-le" if top < 0x10000 else "utf-32-le")
    h = _siphash13(data)
    return (1 << 64) - 2 if h == _M64 else h  # a hash of -1 is stored as -2


def cpython_set_order(items: Iterable[str]) -> list[str]:
    """list(set(items)) as CPython 3.11+ orders it under PYTHONHASHSEED=0 (Objects/setobject.c:
    set_add_entry / set_table_resize / set_insert_clean), for str items."""
    mask, table, fill = 7, [None] * 8, 0

    def insert_clean(tbl: list, msk: int, key: str, h: int) -> None:
        i, perturb = h & msk, h
        while True:
            for j in range(i, i + 10 if i + 9 <= msk else i + 1):
                if tbl[j] is None:
                    tbl[j] = (key, h)
                    return
            perturb >>= 5
            i = (i * 5 + 1 + perturb) & msk

    for key in items:
        h = cpython_str_hash(key)
        i, perturb, found = h & mask, h, False
        while not found:
            for j in range(i, i + 10 if i + 9 <= mask else i + 1):
                entry = table[j]
                if entry is None:
                    table[j] = (key, h)
                    fill += 1
                    found = True
                    break
                if entry[1] == h and entry[0] == key:
                    found = None  # already there
                    break
            else:
                perturb >>= 5
                i = (i * 5 + 1 + perturb) & mask
                continue
            break
        if found and fill * 5 >= mask * 3:
            used = fill  # no deletions: fill == used
            size = 8
            while size <= (used * 2 if used > 50000 else used * 4):
                size <<= 1
            old, mask, table = table, size - 1, [None] * size
            for entry in old:
                if entry is not None:
                    insert_clean(table, mask, entry[0], entry[1])
    return [e[0] for e in table if e is not None]


class DFGWalker:
    """One official DFG_<lang> walk over a parsed code. Edges: (name, position, relation, parent names,
    parent positions); states: name -> positions where its current value may come from."""

    def __init__(self, lang: str, index_to_code: dict):
        self.spec = _SPEC[lang]
        self.index_to_code = index_to_code
        self.text_at = {pos: tok for pos, tok in index_to_code.values()}

    # -- helpers
    def variables(self, node: Any) -> list[tuple]:
        """Official tree_to_variable_index: spans of the tokens under node whose text is not their type."""
        if is_token(node):
            span = (tuple(node.start_point), tuple(node.end_point))
            return [span] if node.type != self.index_to_code[span][1] else []
        out: list[tuple] = []
        for child in node.children:
            out += self.variables(child)
        return out

    def order_names(self, names: Iterable[str], positions: Iterable[int] = ()) -> list[str]:
        """The official list(set(names)), in its PYTHONHASHSEED=0 order (see cpython_set_order)."""
        return cpython_set_order(names)

    def merge_loop(self, dfg: list) -> list:
        """A loop's edges: one per (name, position, relation), parents united (official loop merge)."""
        merged: dict[tuple, list] = {}
        for name, pos, rel, pnames, ppos in dfg:
            key = (name, pos, rel)
            if key not in merged:
                merged[key] = [pnames, ppos]
            else:
                old_names, old_pos = merged[key]
                all_pos = old_pos + ppos
                merged[key] = [self.order_names(old_names + pnames, all_pos), sorted(set(all_pos))]
        out = [(k[0], k[1], k[2], v[0], v[1]) for k, v in sorted(merged.items(), key=lambda kv: kv[0][1])]
        return sorted(out, key=lambda e: e[1])

    def pair_edges(self, dfg: list, states: dict, targets: list, sources: list, rel: str) -> None:
        """Every target token gets one edge per source token; the target then holds its own position."""
        for t in targets:
            t_pos, t_name = self.index_to_code[t]
            for s in sources:
                s_pos, s_name = self.index_to_code[s]
                dfg.append((t_name, t_pos, rel, [s_name], [s_pos]))
            states[t_name] = [t_pos]

    def zip_edges(self, dfg: list, states: dict, lefts: list, rights: list) -> None:
        """Python/Ruby assignments: each left token computed from all tokens of its right side."""
        for left, right in zip(lefts, rights):
            sources = [self.index_to_code[s] for s in self.variables(right)]
            for t in self.variables(left):
                t_pos, t_name = self.index_to_code[t]
                dfg.append((t_name, t_pos, "computedFrom", [s[1] for s in sources], [s[0] for s in sources]))
                states[t_name] = [t_pos]

    def walk_all(self, nodes: Iterable[Any], dfg: list, states: dict) -> dict:
        for node in nodes:
            edges, states = self.walk(node, states)
            dfg += edges
        return states

    @staticmethod
    def split_sides(node: Any, ruby: bool = False) -> tuple[list, list]:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        lefts = [x for x in left.children if x.type != ","]
        rights = [x for x in right.children if x.type != ","]
        if len(lefts) != len(rights):
            lefts, rights = [left], [right]
        if not lefts:
            lefts = [left]
        if not rights:
            rights = [right]
        return lefts, rights

    # -- the walk
    def walk(self, node: Any, states: dict) -> tuple[list, dict]:
        spec = self.spec
        if spec["copy_states"]:
            states = states.copy()
        kind = node.type
        if (len(node.children) == 0 or kind in _LEAF_TYPES) and kind != "comment":
            return self.walk_leaf(node, states)
        for key, handler in ((("definition", self.walk_definition), ("assignment", self.walk_assignment),
                              ("increment", self.walk_increment), ("if_", self.walk_if),
                              ("for_", self.walk_for), ("foreach", self.walk_foreach),
                              ("while_", self.walk_while))):
            if kind in spec[key]:
                return handler(node, states)
        dfg: list = []
        first = spec["first"]
        states = self.walk_all([c for c in node.children if c.type in first], dfg, states)
        states = self.walk_all([c for c in node.children if c.type not in first], dfg, states)
        return sorted(dfg, key=lambda e: e[1]), states

    def walk_leaf(self, node: Any, states: dict) -> tuple[list, dict]:
        states = states.copy() if not self.spec["copy_states"] else states
        pos, name = self.index_to_code[(tuple(node.start_point), tuple(node.end_point))]
        if node.type == name:
            return [], states
        if name in states:
            return [(name, pos, "comesFrom", [name], states[name].copy())], states
        if node.type == "identifier":
            states[name] = [pos]
        return [(name, pos, "comesFrom", [], [])], states

    def walk_definition(self, node: Any, states: dict) -> tuple[list, dict]:
        dfg: list = []
        if self.spec["value_field"] is None:  # C#: (declarator name [value]) by position
            name_node = node.children[0]
            value = node.children[1] if len(node.children) == 2 else None
        else:
            name_node = node.child_by_field_name("name")
            value = node.child_by_field_name(self.spec["value_field"])
        if value is None:
            for span in self.variables(name_node):
                pos, name = self.index_to_code[span]
                dfg.append((name, pos, "comesFrom", [], []))
                states[name] = [pos]
            return sorted(dfg, key=lambda e: e[1]), states
        targets, sources = self.variables(name_node), self.variables(value)
        states = self.walk_all([value], dfg, states)
        self.pair_edges(dfg, states, targets, sources, "comesFrom")
        return sorted(dfg, key=lambda e: e[1]), states

    def walk_assignment(self, node: Any, states: dict) -> tuple[list, dict]:
        dfg: list = []
        kind, style = node.type, self.spec["assign_style"]
        if style == "pairs":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            states = self.walk_all([right], dfg, states)
            self.pair_edges(dfg, states, self.variables(left), self.variables(right), "computedFrom")
            return sorted(dfg, key=lambda e: e[1]), states
        if style == "zip" and kind == "for_in_clause":
            lefts, rights = [node.child_by_field_name("left")], [node.children[-1]]
        elif style == "zip":
            if node.child_by_field_name("right") is None:
                return [], states
            lefts, rights = self.split_sides(node)
        else:  # ruby
            lefts, rights = self.split_sides(node)
            if kind == "operator_assignment":
                lefts, rights = [node.children[0]], [node.children[-1]]
        states = self.walk_all(rights, dfg, states)
        self.zip_edges(dfg, states, lefts, rights)
        return sorted(dfg, key=lambda e: e[1]), states

    def walk_increment(self, node: Any, states: dict) -> tuple[list, dict]:
        dfg: list = []
        spans = self.variables(node)
        self.pair_edges(dfg, states, spans, spans, "computedFrom")
        return sorted(dfg, key=lambda e: e[1]), states

    def walk_for(self, node: Any, states: dict) -> tuple[list, dict]:
        dfg: list = []
        style = self.spec["for_style"]
        if style in ("init", "go"):
            states = self.walk_all(node.children, dfg, states)
            after_init = False
            for child in node.children:
                if after_init:
                    states = self.walk_all([child], dfg, states)
                elif style == "init" and child.type == self.spec["for_init"]:
                    after_init = True
                elif style == "go" and child.type == "for_clause":
                    update = child.child_by_field_name("update")
                    if update is not None:
                        states = self.walk_all([update], dfg, states)
                    after_init = True
        else:
            for _ in range(2):
                if style == "python":
                    lefts, rights = self.split_sides(node)
                else:  # ruby
                    lefts, rights = [node.child_by_field_name("pattern")], [node.child_by_field_name("value")]
                states = self.walk_all(rights, dfg, states)
                self.zip_edges(dfg, states, lefts, rights)
                if style == "ruby":
                    states = self.walk_all([node.child_by_field_name("body")], dfg, states)
                elif node.children[-1].type == "block":
                    states = self.walk_all([node.children[-1]], dfg, states)
        return self.merge_loop(dfg), states

    def walk_foreach(self, node: Any, states: dict) -> tuple[list, dict]:
        dfg: list = []
        if self.spec["foreach_fields"] == "php":  # the first two $variables: collection, then item
            value = name_node = None
            for child in node.children:
                if child.type == "variable_name" and value is None:
                    value = child
                elif child.type == "variable_name" and name_node is None:
                    name_node = child
                    break
        else:
            name_field, value_field = self.spec["foreach_fields"]
            name_node, value = node.child_by_field_name(name_field), node.child_by_field_name(value_field)
        body = node.child_by_field_name("body")
        for _ in range(2):
            states = self.walk_all([value], dfg, states)
            self.pair_edges(dfg, states, self.variables(name_node), self.variables(value), "computedFrom")
            states = self.walk_all([body], dfg, states)
        return self.merge_loop(dfg), states

    def walk_while(self, node: Any, states: dict) -> tuple[list, dict]:
        dfg: list = []
        for _ in range(2):
            states = self.walk_all(node.children, dfg, states)
        return self.merge_loop(dfg), states

    def walk_if(self, node: Any, states: dict) -> tuple[list, dict]:
        spec = self.spec
        dfg: list = []
        current = states.copy()
        branch_states: list[dict] = []
        has_else = "else" in node.type
        in_branches = False
        for child in node.children:
            if "else" in child.type:
                has_else = True
            if spec["if_style"] == "flag":  # from the first else-like child on, every child is a branch
                is_branch = in_branches or child.type in spec["if_"]
                in_branches = is_branch
            elif spec["if_style"] == "clauses":
                is_branch = child.type in ("elif_clause", "else_clause")
            else:
                is_branch = child.type in spec["if_"]
            if is_branch:
                edges, new = self.walk(child, states)
                dfg += edges
                branch_states.append(new)
            else:
                edges, current = self.walk(child, current)
                dfg += edges
        branch_states.append(current)
        keep = spec.get("if_keep_before", "if_no_else")
        if keep in ("if_no_else", "always_and_if_no_else") and not has_else:
            branch_states.append(states)
        if keep in ("always", "always_and_if_no_else"):
            branch_states.append(states)
        merged: dict[str, list] = {}
        for st in branch_states:
            for name, positions in st.items():
                merged[name] = merged.get(name, []) + list(positions)
        return sorted(dfg, key=lambda e: e[1]), {k: sorted(set(v)) for k, v in merged.items()}
