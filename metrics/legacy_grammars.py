"""The parsers CodeBLEU uses by default: tree-sitter grammar releases and tree-sitter runtimes of the
official CodeXGLUE evaluator's era, compiled once into shared libraries and driven through ctypes.

    python -m metrics.legacy_grammars build      # idempotent; what `make install` runs
    python -m metrics.legacy_grammars status

What the official evaluator parses with: its `parser/my-languages.so` (committed 2020-09, tree-sitter
language ABI 11), built from the grammar repositories' master branches of mid-2020, loaded by
py-tree-sitter 0.2.2 (whose bundled runtime is tree-sitter 0.17.0's). No registry has those grammar
snapshots, and the modern `tree_sitter` wheel (runtime 0.22) cannot load ABI 11/12 grammars at all;
a newer runtime also recovers from syntax errors differently. So, per language, the closest pair of
(grammar release, runtime release) that the npm registry has, measured against the official library
on real CodeXGLUE code (bench/bench_codebleu_parity.py, metrics/CODEBLEU.md):

  * c_sharp: tree-sitter-c-sharp 0.16.1 with the tree-sitter 0.17.0 runtime. Its trees are the
    official ones node for node (893 of 893 codes of the parity bench, error recovery included): the
    official grammar is 0.16.1 plus commit "Add some fields" (May 2020), which only adds field names.
    Those fields (e.g. `left:`/`right:` of assignment_expression, which the data-flow walk reads) are
    put back here after the parse (_CSHARP_2020_FIELDS). The 0.19 line is not usable: it wraps
    top-level methods in global_statement/local_function_statement and cannot parse a top-level
    constructor at all (C# 9 top-level statements).
  * java: tree-sitter-java 0.19.1 (the first release after the official snapshot whose trees have the
    official shape; 0.16.0 predates several node changes) with the tree-sitter 0.19.0 runtime, the
    oldest that loads it: 1,211 of 1,227 codes parse as the official (with the modern 0.22 runtime:
    1,134; the rest differ in error recovery).
  * python, javascript, go, php, ruby: the 0.19 releases with the 0.19.0 runtime, like java.

Sources come from the npm registry (`npm pack`, no install scripts run), are checked against the
sha256 pinned here, and only their C sources are compiled with the system C/C++ compiler: for each
runtime, its `vendor/tree-sitter/lib` (from the `tree-sitter` node package of that version), the
grammars' src/parser.c and src/scanner.c[c], and the small C helper below (one call per parse returns
the visible nodes of the tree) go into one shared library, runs/cache/codebleu_grammars/
official-grammars-rt<version>.so (or under $CODEBLEU_GRAMMARS_DIR). Nothing of them is committed.

The nodes handed to the CodeBLEU code (`Node`) have .type, .children, .start_point, .end_point,
.child_by_field_name() and str(node) = the runtime's s-expression (ts_node_string), so
metrics/codebleu_syntax.py and codebleu_dfg.py walk them like py-tree-sitter nodes.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterator

# tree-sitter runtime version -> (npm package, version, sha256 of the npm tarball)
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "0.17.0": ("tree-sitter", "0.17.0", "b6e04cd6d13e6776d9f8ba3de64b7af62fc1996799365c26d6bcf504625ceff4"),
    "0.19.0": ("tree-sitter", "0.19.0", "db38264d9a3074d544528bf198b44b7a4cc1af40d287ccae83b72f2306a5ad29"),
}
# CodeBLEU language -> (npm package, version, sha256 of the npm tarball, runtime version)
GRAMMARS: dict[str, tuple[str, str, str, str]] = {
    "java": ("tree-sitter-java", "0.19.1", "723661f0c4aa94498c43f31f990b28fa4e1748caf84b538c10818be1eb14e1be", "0.19.0"),
    "c_sharp": ("tree-sitter-c-sharp", "0.16.1", "e476cf04fbff1c8af9698c4445855f8c9730d4bf260dd783f7108973217a1b72", "0.17.0"),
    "python": ("tree-sitter-python", "0.19.0", "61187f43cf20ce9c016be52b83e6de6abc368e56c51b37c75c3e4fe27852d395", "0.19.0"),
    "javascript": ("tree-sitter-javascript", "0.19.0", "03dcfcea0e5cba616fef1029d96f22ebf975e1f5d91c6333c60c672b48d784d3", "0.19.0"),
    "go": ("tree-sitter-go", "0.19.1", "235ff57b3e16393e8127ec25ffcd5b46c6a6fbac57a9cf5c24b718b13d8e1bf6", "0.19.0"),
    "php": ("tree-sitter-php", "0.19.0", "a96af9e42d8507afd31d9578f4f61bfebf486bb6a23a6f4df21ed5665b22f2ef", "0.19.0"),
    "ruby": ("tree-sitter-ruby", "0.19.0", "e0cf07172270d4dd5bfcca1e4eb86a0aa0f1cfb4b99d9a8710e1eb69450d7d25", "0.19.0"),
}
ROOT = Path(__file__).resolve().parents[1]

# One call per parse: the visible nodes in pre-order, _ROW ints each (symbol, flags, start row/column,
# end row/column, field id, visible child count, offset and length of a text), and for every ERROR
# node without children the runtime's own s-expression of it (its "(UNEXPECTED 'c')" form). Our own
# code (the tree-sitter C API only).
_HELPER_C = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tree_sitter/api.h>

typedef struct { int32_t *v; size_t n, cap; } ivec;
typedef struct { char *v; size_t n, cap; } cvec;

static int ipush(ivec *a, int32_t x) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? 2 * a->cap : 4096;
    int32_t *p = realloc(a->v, cap * sizeof *p);
    if (!p) return 0;
    a->v = p; a->cap = cap;
  }
  a->v[a->n++] = x;
  return 1;
}

static int cpush(cvec *a, const char *s, size_t len) {
  if (a->n + len + 1 > a->cap) {
    size_t cap = a->cap ? 2 * a->cap : 256;
    while (cap < a->n + len + 1) cap *= 2;
    char *p = realloc(a->v, cap);
    if (!p) return 0;
    a->v = p; a->cap = cap;
  }
  memcpy(a->v + a->n, s, len);
  a->n += len;
  a->v[a->n] = 0;
  return 1;
}

void cbleu_free(void *p) { free(p); }

/* 0 ok, 1 language refused by this runtime (ABI), 2 parse failed, 3 out of memory */
int cbleu_parse(const TSLanguage *lang, const char *src, uint32_t len, int root_sexp,
                int32_t **nodes, uint32_t *n_nodes, char **text, uint32_t *n_text) {
  ivec out = {0}; cvec txt = {0};
  int rc = 0;
  TSParser *parser = ts_parser_new();
  if (!ts_parser_set_language(parser, lang)) { ts_parser_delete(parser); return 1; }
  TSTree *tree = ts_parser_parse_string(parser, NULL, src, len);
  if (!tree) { ts_parser_delete(parser); return 2; }
  TSNode root = ts_tree_root_node(tree);
  if (root_sexp) {
    char *s = ts_node_string(root);
    if (!s || !cpush(&txt, s, strlen(s))) rc = 3;
    free(s);
  } else {
    TSTreeCursor cur = ts_tree_cursor_new(root);
    for (;;) {
      TSNode node = ts_tree_cursor_current_node(&cur);
      uint32_t count = ts_node_child_count(node);
      TSPoint a = ts_node_start_point(node), b = ts_node_end_point(node);
      int32_t flags = (ts_node_is_named(node) ? 1 : 0) | (ts_node_is_missing(node) ? 2 : 0)
                    | (ts_node_is_extra(node) ? 4 : 0);
      int32_t off = -1, tlen = 0;
      if (ts_node_symbol(node) == (TSSymbol)-1 && count == 0) {
        char *s = ts_node_string(node);
        if (!s) { rc = 3; break; }
        off = (int32_t)txt.n; tlen = (int32_t)strlen(s);
        if (!cpush(&txt, s, strlen(s))) { free(s); rc = 3; break; }
        free(s);
      }
      int32_t row[10] = {ts_node_symbol(node), flags, (int32_t)a.row, (int32_t)a.column, (int32_t)b.row,
                         (int32_t)b.column, ts_tree_cursor_current_field_id(&cur), (int32_t)count, off, tlen};
      for (int i = 0; i < 10; i++) if (!ipush(&out, row[i])) { rc = 3; break; }
      if (rc) break;
      if (ts_tree_cursor_goto_first_child(&cur)) continue;
      int more = 1;
      while (!ts_tree_cursor_goto_next_sibling(&cur)) {
        if (!ts_tree_cursor_goto_parent(&cur)) { more = 0; break; }
      }
      if (!more) break;
    }
    ts_tree_cursor_delete(&cur);
  }
  ts_tree_delete(tree);
  ts_parser_delete(parser);
  if (rc) { free(out.v); free(txt.v); return rc; }
  *nodes = out.v; *n_nodes = (uint32_t)out.n;
  if (!txt.v) cpush(&txt, "", 0);
  *text = txt.v; *n_text = (uint32_t)txt.n;
  return 0;
}
"""
_ROW = 10


class GrammarsMissing(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("CODEBLEU_GRAMMARS_DIR") or ROOT / "runs" / "cache" / "codebleu_grammars")


def _manifest() -> dict:
    out = {f"runtime {v}": f"{pkg}@{ver} sha256:{sha}" for v, (pkg, ver, sha) in sorted(RUNTIMES.items())}
    out.update({lang: f"{pkg}@{ver} sha256:{sha} runtime:{rt}" for lang, (pkg, ver, sha, rt) in sorted(GRAMMARS.items())})
    out["helper sha256"] = hashlib.sha256(_HELPER_C.encode()).hexdigest()
    return out


def library_path(runtime: str) -> Path:
    return cache_dir() / f"official-grammars-rt{runtime}.so"


def is_built() -> bool:
    d = cache_dir()
    try:
        return (all(library_path(rt).exists() for rt in RUNTIMES)
                and json.loads((d / "manifest.json").read_text()) == _manifest())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _lock(d: Path) -> Iterator[None]:
    import fcntl

    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # concurrent test runs build once
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], **kw) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise GrammarsMissing(f"building the CodeBLEU grammars needs `{cmd[0]}` on PATH ({e})") from e
    except subprocess.CalledProcessError as e:
        raise GrammarsMissing(f"`{' '.join(cmd)}` failed ({e.returncode}):\n{e.stdout}\n{e.stderr}") from e


def _fetch(pkg: str, ver: str, sha: str, dest: Path) -> Path:
    """The npm tarball of pkg@ver in dest, checked against its pinned sha256."""
    tgz = dest / f"{pkg}-{ver}.tgz"
    if not tgz.exists() or hashlib.sha256(tgz.read_bytes()).hexdigest() != sha:
        npm = shutil.which("npm")
        if npm is None:
            raise GrammarsMissing("building the CodeBLEU grammars needs `npm` (to fetch the grammar tarballs "
                                  "from the npm registry); install Node.js/npm, e.g. `apt-get install npm`")
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            _run([npm, "pack", f"{pkg}@{ver}", "--ignore-scripts", "--silent"], cwd=tmp)
            got = Path(tmp) / tgz.name
            if not got.exists():
                raise GrammarsMissing(f"npm pack {pkg}@{ver} produced no {tgz.name}")
            os.replace(got, tgz)
    digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
    if digest != sha:
        raise GrammarsMissing(f"{tgz.name}: sha256 {digest} != pinned {sha}")
    return tgz


def _extract(tgz: Path, dest: Path, keep: Callable[[str], bool], prefix: str) -> list[Path]:
    """The members of an npm tarball under package/<prefix> that `keep` accepts, written under dest."""
    out = []
    with tarfile.open(tgz) as tar:
        for m in tar.getmembers():
            name = m.name
            if not m.isfile() or ".." in Path(name).parts or not name.startswith(f"package/{prefix}"):
                continue
            rel = name[len(f"package/{prefix}"):]
            if keep(rel):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
                out.append(target)
    return sorted(out)


def _grammar_sources(tgz: Path, dest: Path) -> list[Path]:
    """src/parser.c, src/scanner.c[c] and src/tree_sitter/*.h of an npm grammar tarball."""
    files = _extract(tgz, dest, lambda r: r in ("parser.c", "scanner.c", "scanner.cc")
                     or (r.startswith("tree_sitter/") and r.endswith(".h")), "src/")
    if not any(p.name == "parser.c" for p in files):
        raise GrammarsMissing(f"{tgz.name} has no src/parser.c")
    return [p for p in files if p.suffix in (".c", ".cc")]


def _runtime_sources(tgz: Path, dest: Path) -> Path:
    """vendor/tree-sitter/lib of the `tree-sitter` node package: the C runtime (lib/src/lib.c)."""
    _extract(tgz, dest, lambda r: r.endswith((".c", ".h")), "vendor/tree-sitter/lib/")
    if not (dest / "src" / "lib.c").exists():
        raise GrammarsMissing(f"{tgz.name} has no vendor/tree-sitter/lib/src/lib.c")
    return dest


def build(force: bool = False, verbose: bool = False) -> list[Path]:
    """Fetch, check and compile the runtimes and grammars into cache_dir() (idempotent)."""
    d = cache_dir()
    if not force and is_built():
        return [library_path(rt) for rt in RUNTIMES]
    with _lock(d):
        if not force and is_built():
            return [library_path(rt) for rt in RUNTIMES]
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
        if cc is None:
            raise GrammarsMissing("building the CodeBLEU grammars needs a C compiler (cc/gcc) on PATH")
        (d / "tarballs").mkdir(parents=True, exist_ok=True)
        for rt, (rpkg, rver, rsha) in sorted(RUNTIMES.items()):
            with tempfile.TemporaryDirectory(dir=d) as tmp:
                if verbose:
                    print(f"  runtime {rt}: {rpkg}@{rver}", file=sys.stderr)
                lib = _runtime_sources(_fetch(rpkg, rver, rsha, d / "tarballs"), Path(tmp) / "runtime")
                inc = ["-I", str(lib / "include"), "-I", str(lib / "src")]
                helper = Path(tmp) / "cbleu_helper.c"
                helper.write_text(_HELPER_C)
                objects = [str(Path(tmp) / "lib.o"), str(Path(tmp) / "helper.o")]
                _run([cc, "-fPIC", "-O2", "-std=gnu99", "-c", *inc, str(lib / "src" / "lib.c"), "-o", objects[0]])
                _run([cc, "-fPIC", "-O2", "-std=gnu99", "-c", "-I", str(lib / "include"), str(helper), "-o", objects[1]])
                need_cxx = False
                for lang, (pkg, ver, sha, grt) in sorted(GRAMMARS.items()):
                    if grt != rt:
                        continue
                    if verbose:
                        print(f"  {lang}: {pkg}@{ver}", file=sys.stderr)
                    srcdir = Path(tmp) / f"{pkg}-{ver}"
                    for src in _grammar_sources(_fetch(pkg, ver, sha, d / "tarballs"), srcdir):
                        obj = src.with_suffix(src.suffix + ".o")
                        if src.suffix == ".cc":
                            if cxx is None:
                                raise GrammarsMissing(f"{pkg} has a C++ scanner: building needs c++/g++ on PATH")
                            need_cxx = True
                            cmd = [cxx, "-fPIC", "-O2", "-c", "-I", str(src.parent), str(src), "-o", str(obj)]
                        else:
                            cmd = [cc, "-fPIC", "-O2", "-std=c99", "-c", "-I", str(src.parent), str(src), "-o", str(obj)]
                        _run(cmd)
                        objects.append(str(obj))
                out = Path(tmp) / library_path(rt).name
                # -Bsymbolic: each library's runtime calls itself, never another loaded tree-sitter
                _run([cxx if need_cxx else cc, "-shared", "-Wl,-Bsymbolic", "-o", str(out), *objects])
                os.replace(out, library_path(rt))
        (d / "official-grammars.so").unlink(missing_ok=True)  # the single library of the earlier layout
        (d / "manifest.json").write_text(json.dumps(_manifest(), indent=1) + "\n")
    return [library_path(rt) for rt in RUNTIMES]


# ------------------------------------------------------------------ loading
@functools.lru_cache(maxsize=None)
def _library(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    i32p, u32p, charp = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_char)
    lib.cbleu_parse.restype = ctypes.c_int
    lib.cbleu_parse.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int,
                                ctypes.POINTER(i32p), u32p, ctypes.POINTER(charp), u32p]
    lib.cbleu_free.argtypes = [ctypes.c_void_p]
    lib.ts_language_symbol_name.restype = ctypes.c_char_p
    lib.ts_language_symbol_name.argtypes = [ctypes.c_void_p, ctypes.c_uint16]
    lib.ts_language_field_name_for_id.restype = ctypes.c_char_p
    lib.ts_language_field_name_for_id.argtypes = [ctypes.c_void_p, ctypes.c_uint16]
    lib.ts_language_version.restype = ctypes.c_uint32
    lib.ts_language_version.argtypes = [ctypes.c_void_p]
    return lib


class Language:
    """One official-era grammar in the library of its runtime."""

    def __init__(self, lang: str, lib: ctypes.CDLL):
        self.name, self.lib = lang, lib
        fn = getattr(lib, f"tree_sitter_{lang}")
        fn.restype = ctypes.c_void_p
        self.ptr = fn()
        self.runtime = GRAMMARS[lang][3]
        self.version = lib.ts_language_version(self.ptr)
        self._symbols: dict[int, str] = {}
        self._fields: dict[int, str | None] = {0: None}
        self._overlay = _FIELD_OVERLAYS.get(lang, {})

    def symbol_name(self, sym: int) -> str:
        name = self._symbols.get(sym)
        if name is None:
            raw = self.lib.ts_language_symbol_name(self.ptr, sym)
            name = self._symbols[sym] = raw.decode("utf-8") if raw is not None else ""
        return name

    def field_name(self, fid: int) -> str | None:
        if fid not in self._fields:
            raw = self.lib.ts_language_field_name_for_id(self.ptr, fid)
            self._fields[fid] = raw.decode("utf-8") if raw is not None else None
        return self._fields[fid]

    def _call(self, source: bytes, root_sexp: bool) -> tuple[list[int], bytes]:
        nodes, n_nodes = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_uint32()
        text, n_text = ctypes.POINTER(ctypes.c_char)(), ctypes.c_uint32()
        rc = self.lib.cbleu_parse(self.ptr, source, len(source), int(root_sexp), ctypes.byref(nodes),
                                  ctypes.byref(n_nodes), ctypes.byref(text), ctypes.byref(n_text))
        if rc:
            raise RuntimeError(f"tree-sitter {self.runtime} could not parse with the {self.name} grammar "
                               f"(ABI {self.version}): error {rc}")
        try:
            return nodes[:n_nodes.value], ctypes.string_at(text, n_text.value)
        finally:
            self.lib.cbleu_free(nodes)
            self.lib.cbleu_free(text)

    def parse(self, source: bytes) -> "Tree":
        rows, text = self._call(source, False)
        return Tree(self._build(rows, text))

    def native_sexp(self, source: bytes) -> str:
        """The runtime's own ts_node_string of the root (without the fields put back by an overlay)."""
        return self._call(source, True)[1].decode("utf-8")

    def _build(self, rows: list[int], text: bytes) -> "Node":
        root = None
        stack: list[list] = []  # [node, children still to attach]
        for i in range(0, len(rows), _ROW):
            sym, flags, r0, c0, r1, c1, fid, count, off, tlen = rows[i:i + _ROW]
            node = Node(self.symbol_name(sym), bool(flags & 1), bool(flags & 2), bool(flags & 4),
                        (r0, c0), (r1, c1), self.field_name(fid),
                        text[off:off + tlen].decode("utf-8", "replace") if off >= 0 else None)
            if stack:
                stack[-1][0].children.append(node)
                stack[-1][1] -= 1
            else:
                root = node
            if count:
                stack.append([node, count])
            else:
                self._complete(node)
            while stack and stack[-1][1] == 0:
                self._complete(stack.pop()[0])
        return root

    def _complete(self, node: "Node") -> None:
        rule = self._overlay.get(node.type)
        if rule is not None:
            rule(node)


class Tree:
    __slots__ = ("root_node",)

    def __init__(self, root: "Node"):
        self.root_node = root


class Node:
    """A visible node: .type, .is_named, .is_missing, .is_extra, .start_point/.end_point (row, byte
    column), .field_name (its field in its parent), .children; str(node) is the runtime's
    s-expression of the node (ts_node_string), with the fields of an overlay included."""

    __slots__ = ("type", "is_named", "is_missing", "is_extra", "start_point", "end_point", "field_name",
                 "children", "_error_text", "_sexp")

    def __init__(self, type_, named, missing, extra, start, end, field, error_text):
        self.type, self.is_named, self.is_missing, self.is_extra = type_, named, missing, extra
        self.start_point, self.end_point, self.field_name = start, end, field
        self.children: list[Node] = []
        self._error_text, self._sexp = error_text, None

    def child_by_field_name(self, name: str) -> "Node | None":
        for child in self.children:
            if child.field_name == name:
                return child
        return None

    def __repr__(self) -> str:
        return f"<Node {self.type} {self.start_point}-{self.end_point}>"

    def __str__(self) -> str:
        # the runtime's ts_subtree__write_to_string, on the visible nodes: named and MISSING nodes are
        # printed, with their field; a childless ERROR node prints as the runtime wrote it
        if self._sexp is None:
            if self._error_text is not None and self._error_text.startswith("(UNEXPECTED"):
                self._sexp = self._error_text
            else:
                if self.is_missing:
                    head = f"(MISSING {self.type}" if self.is_named else f'(MISSING "{self.type}"'
                else:
                    head = f"({self.type}"
                parts = [head]
                for c in self.children:
                    if c.is_named or c.is_missing:
                        field = c.field_name if not c.is_extra else None
                        parts.append(f" {field}: " if field else " ")
                        parts.append(str(c))
                parts.append(")")
                self._sexp = "".join(parts)
        return self._sexp


# ------------------------------------------------------------------ C#: the fields of the official grammar
# The official C# grammar is tree-sitter-c-sharp 0.16.1 plus its commit "Add some fields" (2020-05-14),
# which names children that 0.16.1 leaves unnamed and changes nothing else. Each rule below puts one of
# those fields back, on the children (extras skipped) at the positions that production gives them.
def _structural(node: Node) -> list[Node]:
    return [c for c in node.children if not c.is_extra]


def _label(child: Node | None, field: str) -> None:
    if child is not None and child.field_name is None:
        child.field_name = field
        child._sexp = None


def _positional(*fields: str | None) -> Callable[[Node], None]:
    def rule(node: Node) -> None:
        kids = _structural(node)
        for field, child in zip(fields, kids):
            if field:
                _label(child, field)
    return rule


def _after(token: str, field: str) -> Callable[[Node], None]:
    def rule(node: Node) -> None:
        kids = _structural(node)
        for i, c in enumerate(kids[:-1]):
            if c.type == token and not c.is_named:
                _label(kids[i + 1], field)
                return
    return rule


def _assignment(node: Node) -> None:  # field('left', _expression) assignment_operator field('right', _expression)
    kids = _structural(node)
    for i, c in enumerate(kids):
        if c.type == "assignment_operator":
            if i > 0:
                _label(kids[0], "left")
            if i + 1 < len(kids):
                _label(kids[i + 1], "right")
            return


def _constructor(node: Node) -> None:  # attribute_list* modifier* field(name) field(parameters) ...
    kids = [c for c in _structural(node) if c.type not in ("attribute_list", "modifier")]
    if kids and kids[0].type == "identifier":
        _label(kids[0], "name")
        if len(kids) > 1 and kids[1].type == "parameter_list":
            _label(kids[1], "parameters")


def _local_function(node: Node) -> None:  # modifier* field(type) field(name) field(type_parameters)? field(parameters)
    kids = [c for c in _structural(node) if c.type != "modifier"]
    names = ["type", "name"] + (["type_parameters"] if len(kids) > 2 and kids[2].type == "type_parameter_list" else [])
    names.append("parameters")
    for field, child in zip(names, kids):
        _label(child, field)


def _using(node: Node) -> None:  # await? using ( declaration | expression ) field(body)
    kids = _structural(node)
    if len(kids) >= 2 and kids[-2].type == ")":
        _label(kids[-1], "body")


_CSHARP_2020_FIELDS: dict[str, Callable[[Node], None]] = {
    "assignment_expression": _assignment,
    "attribute": _positional("name"),
    "constructor_declaration": _constructor,
    "local_function_statement": _local_function,
    "using_statement": _using,
    "lambda_expression": _after("=>", "body"),
    "conditional_access_expression": _positional("condition", None, "value"),
    "element_access_expression": _positional("expression", "subscript"),
    "invocation_expression": _positional("function", "arguments"),
    "is_pattern_expression": _positional("expression", None, "pattern"),
}
_FIELD_OVERLAYS: dict[str, dict[str, Callable[[Node], None]]] = {"c_sharp": _CSHARP_2020_FIELDS}


def language(lang: str, build_if_missing: bool = True) -> Language:
    """The official-era grammar of lang in its runtime's library (built on first use if allowed)."""
    if lang not in GRAMMARS:
        raise ValueError(f"no official-era grammar for {lang!r} (the official CodeBLEU supports "
                         f"{', '.join(GRAMMARS)}); use grammar='modern' for other languages")
    if not is_built():
        if not build_if_missing:
            raise GrammarsMissing(f"CodeBLEU grammars not built under {cache_dir()}: run "
                                  "`python -m metrics.legacy_grammars build` (part of `make install`)")
        build()
    return _language(lang, str(library_path(GRAMMARS[lang][3])))


@functools.lru_cache(maxsize=None)
def _language(lang: str, path: str) -> Language:
    return Language(lang, _library(path))


def parser(lang: str, build_if_missing: bool = True) -> Language:
    """An object with .parse(source: bytes) -> tree with .root_node, like a py-tree-sitter Parser."""
    return language(lang, build_if_missing)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metrics.legacy_grammars", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("build", "status"))
    ap.add_argument("--force", action="store_true", help="rebuild even if the libraries are up to date")
    args = ap.parse_args(argv)
    if args.command == "status":
        print(json.dumps({"built": is_built(), "libraries": [str(library_path(rt)) for rt in RUNTIMES],
                          "grammars": _manifest()}, indent=1))
        return 0 if is_built() else 1
    try:
        paths = build(force=args.force, verbose=True)
    except GrammarsMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("CodeBLEU grammars ready: " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
