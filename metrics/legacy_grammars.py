"""The grammars CodeBLEU parses with by default: the tree-sitter grammar releases that match the 2020
`my-languages.so` of the official CodeXGLUE evaluator, compiled once into one shared library.

    python -m metrics.legacy_grammars build      # idempotent; what `make install` runs
    python -m metrics.legacy_grammars status

Why these versions: the official library was built in 2020 from the grammar repositories' master
branches (tree-sitter 0.16 ABI). No registry has those snapshots. The grammar releases of that time
(npm 0.16.x, loaded with tree_sitter 0.2.2) do NOT reproduce the official golden numbers: java 0.16.0
gives syntax_match 0.8029 (official 0.7938) and c-sharp 0.16.1 has no left/right fields on
assignments, so its data flow collapses (0.947, official 0.681). The first releases after the snapshot,
the 0.19 line (early 2021, ABI 13, loadable by the modern tree_sitter runtime already installed),
reproduce java's syntax and dataflow parts exactly and c_sharp's dataflow part exactly (its syntax
part is 0.0027 lower: 0.19 wraps a top-level method in global_statement/local_function_statement).
The same 0.19 line is used for the other official languages for consistency.

Sources come from the npm registry (`npm pack`, no install scripts run), are checked against the
sha256 pinned here, and only their generated C sources (src/parser.c, src/scanner.c[c]) are compiled
with the system C/C++ compiler. Nothing of them is committed: the cache folder is runs/cache (ignored),
or $CODEBLEU_GRAMMARS_DIR.
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
from typing import Iterator

# CodeBLEU language -> (npm package, version, sha256 of the npm tarball)
GRAMMARS: dict[str, tuple[str, str, str]] = {
    "java": ("tree-sitter-java", "0.19.1", "723661f0c4aa94498c43f31f990b28fa4e1748caf84b538c10818be1eb14e1be"),
    "c_sharp": ("tree-sitter-c-sharp", "0.19.0", "9c63e007ebcd71e2c95b5e006f6d70139456158f619679846068790264bdd727"),
    "python": ("tree-sitter-python", "0.19.0", "61187f43cf20ce9c016be52b83e6de6abc368e56c51b37c75c3e4fe27852d395"),
    "javascript": ("tree-sitter-javascript", "0.19.0", "03dcfcea0e5cba616fef1029d96f22ebf975e1f5d91c6333c60c672b48d784d3"),
    "go": ("tree-sitter-go", "0.19.1", "235ff57b3e16393e8127ec25ffcd5b46c6a6fbac57a9cf5c24b718b13d8e1bf6"),
    "php": ("tree-sitter-php", "0.19.0", "a96af9e42d8507afd31d9578f4f61bfebf486bb6a23a6f4df21ed5665b22f2ef"),
    "ruby": ("tree-sitter-ruby", "0.19.0", "e0cf07172270d4dd5bfcca1e4eb86a0aa0f1cfb4b99d9a8710e1eb69450d7d25"),
}
LIBRARY_NAME = "official-grammars.so"
ROOT = Path(__file__).resolve().parents[1]


class GrammarsMissing(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("CODEBLEU_GRAMMARS_DIR") or ROOT / "runs" / "cache" / "codebleu_grammars")


def _manifest() -> dict:
    return {lang: f"{pkg}@{ver} sha256:{sha}" for lang, (pkg, ver, sha) in sorted(GRAMMARS.items())}


def library_path() -> Path:
    return cache_dir() / LIBRARY_NAME


def is_built() -> bool:
    d = cache_dir()
    try:
        return (d / LIBRARY_NAME).exists() and json.loads((d / "manifest.json").read_text()) == _manifest()
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


def _extract_sources(tgz: Path, dest: Path) -> list[Path]:
    """src/parser.c, src/scanner.c[c] and src/tree_sitter/*.h of an npm grammar tarball."""
    wanted = {"package/src/parser.c", "package/src/scanner.c", "package/src/scanner.cc"}
    sources = []
    with tarfile.open(tgz) as tar:
        for m in tar.getmembers():
            name = m.name
            if not m.isfile() or ".." in Path(name).parts:
                continue
            if name in wanted or (name.startswith("package/src/tree_sitter/") and name.endswith(".h")):
                out = dest / Path(name).relative_to("package")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(m).read())
                if name in wanted:
                    sources.append(out)
    if not any(p.name == "parser.c" for p in sources):
        raise GrammarsMissing(f"{tgz.name} has no src/parser.c")
    return sorted(sources)


def build(force: bool = False, verbose: bool = False) -> Path:
    """Fetch, check and compile the grammars into cache_dir()/official-grammars.so (idempotent)."""
    d = cache_dir()
    if not force and is_built():
        return library_path()
    with _lock(d):
        if not force and is_built():
            return library_path()
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
        if cc is None:
            raise GrammarsMissing("building the CodeBLEU grammars needs a C compiler (cc/gcc) on PATH")
        (d / "tarballs").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            objects, need_cxx = [], False
            for lang, (pkg, ver, sha) in sorted(GRAMMARS.items()):
                if verbose:
                    print(f"  {lang}: {pkg}@{ver}", file=sys.stderr)
                tgz = _fetch(pkg, ver, sha, d / "tarballs")
                srcdir = Path(tmp) / f"{pkg}-{ver}"
                for src in _extract_sources(tgz, srcdir):
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
            out = Path(tmp) / LIBRARY_NAME
            _run([cxx if need_cxx else cc, "-shared", "-o", str(out), *objects])
            os.replace(out, d / LIBRARY_NAME)
        (d / "manifest.json").write_text(json.dumps(_manifest(), indent=1) + "\n")
    return library_path()


@functools.lru_cache(maxsize=None)
def _library(path: str) -> ctypes.CDLL:
    return ctypes.CDLL(path)


def language(lang: str, build_if_missing: bool = True):
    """The tree_sitter.Language of lang from the compiled library (built on first use if allowed)."""
    if lang not in GRAMMARS:
        raise ValueError(f"no official-era grammar for {lang!r} (the official CodeBLEU supports "
                         f"{', '.join(GRAMMARS)}); use grammar='modern' for other languages")
    if not is_built():
        if not build_if_missing:
            raise GrammarsMissing(f"CodeBLEU grammars not built under {cache_dir()}: run "
                                  "`python -m metrics.legacy_grammars build` (part of `make install`)")
        build()
    from tree_sitter import Language

    fn = getattr(_library(str(library_path())), f"tree_sitter_{lang}")
    fn.restype = ctypes.c_void_p
    ptr = fn()
    try:  # tree_sitter >= 0.23 takes the capsule that the grammar bindings return
        new_capsule = ctypes.pythonapi.PyCapsule_New
        new_capsule.restype = ctypes.py_object
        new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return Language(new_capsule(ptr, b"tree_sitter.Language", None))
    except TypeError:  # tree_sitter 0.22 takes the raw pointer
        return Language(ptr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metrics.legacy_grammars", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("build", "status"))
    ap.add_argument("--force", action="store_true", help="rebuild even if the library is up to date")
    args = ap.parse_args(argv)
    if args.command == "status":
        print(json.dumps({"built": is_built(), "library": str(library_path()), "grammars": _manifest()}, indent=1))
        return 0 if is_built() else 1
    try:
        path = build(force=args.force, verbose=True)
    except GrammarsMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"CodeBLEU grammars ready: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
