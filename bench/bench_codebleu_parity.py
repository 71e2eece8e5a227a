"""CodeBLEU of metrics.code_bleu against the official CodeXGLUE evaluator, on candidates built from
real CodeXGLUE Java and C# pairs.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_codebleu_parity.py \\
        --official /tmp/official_codebleu/Code-Code/code-to-code-trans/evaluator/CodeBLEU \\
        --official-python /tmp/official_venv/bin/python [--seed 0] [--refs 160] [--dump out.json]

`--official` is a scratch checkout of the official evaluator (the CodeBLEU folder of
microsoft/CodeXGLUE, or the checkout root), `--official-python` a Python that runs it (the
`tree_sitter` of its era, e.g. 0.2.2, which loads its shipped parser/my-languages.so). Nothing of it
is imported here: its calc_code_bleu.py runs unchanged in a subprocess (cwd = its folder,
PYTHONHASHSEED=0, as the golden runs), once per case through runpy inside one process (the script
keeps no state between runs), and once per language on the whole corpus as a plain command.
metrics/CODEBLEU.md says how to set both up.

Cases (seeded, deterministic): references are the Java and C# sides of code_to_code_trans
(train/validation/test) and the fixed side of code_refinement/small (Java), from tasks/data. Each
reference gets candidates made by token edits (substitutions), deletions, consistent renamings of an
identifier, swaps of two adjacent statements, and the other side of its pair (the C#/Java
translation; the buggy version for refinement).

Prints, per language and overall: the case count, the share of cases whose CodeBLEU is within 0.005
of the official one, the maximum difference, whether ngram_match and weighted_ngram_match are
exactly equal on every case, the largest difference of each structural part, and the corpus-level
CodeBLEU of both. Exits 1 if the target (>= 95% within 0.005, n-gram parts exactly equal) is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tasks" / "data"
PARTS = ("ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match", "codebleu")
KINDS = ("edit", "delete", "rename", "reorder", "other_side")

_LEX = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_$][A-Za-z0-9_$]*|\d[\w.]*|\S')
_KEYWORDS = frozenset("""abstract as base bool boolean break byte case catch char checked class const continue
decimal default delegate do double else enum event explicit extends extern false final finally fixed float for
foreach goto if implements implicit import in instanceof int interface internal is lock long namespace native new
null object operator out override package params private protected public readonly ref return sbyte sealed short
sizeof stackalloc static string strictfp struct super switch synchronized this throw throws transient true try
typeof uint ulong unchecked unsafe ushort using var virtual void volatile while""".split())


# ------------------------------------------------------------------ candidates
def _tokens(code: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in _LEX.finditer(code)]


def _is_ident(tok: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", tok)) and tok not in _KEYWORDS


def _splice(code: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, text in sorted(edits, reverse=True):
        code = code[:start] + text + code[end:]
    return code


def edit(code: str, rng: random.Random) -> str:
    """1-3 tokens replaced by another token of the same code and of the same kind (name / other)."""
    toks = _tokens(code)
    names = [t for t in toks if _is_ident(t[2])]
    others = [t for t in toks if not _is_ident(t[2])]
    edits = []
    for tok in rng.sample(toks, min(len(toks), rng.randint(1, 3))):
        pool = names if _is_ident(tok[2]) else others
        choices = sorted({t[2] for t in pool} - {tok[2]})
        if choices:
            edits.append((tok[0], tok[1], rng.choice(choices)))
    return _splice(code, edits)


def delete(code: str, rng: random.Random) -> str:
    """1-3 single tokens, or one run of 2-6 tokens, removed."""
    toks = _tokens(code)
    if rng.random() < 0.5:
        doomed = rng.sample(toks, min(len(toks) - 1, rng.randint(1, 3)))
        return _splice(code, [(s, e, "") for s, e, _ in doomed])
    n = min(len(toks) - 1, rng.randint(2, 6))
    i = rng.randrange(0, len(toks) - n + 1)
    return code[:toks[i][0]] + code[toks[i + n - 1][1]:]


def rename(code: str, rng: random.Random) -> str:
    """Every occurrence of one identifier (a variable, parameter, method or type name) renamed."""
    toks = _tokens(code)
    names = sorted({t[2] for t in toks if _is_ident(t[2])})
    if not names:
        return code
    old = rng.choice(names)
    new = rng.choice(["tmp", "value", "item", "result", "x", "node", "count", "data"]) + str(rng.randint(0, 9))
    return _splice(code, [(s, e, new) for s, e, t in toks if t == old])


def reorder(code: str, rng: random.Random) -> str:
    """Two adjacent simple statements (`...;` with no brace inside) swapped."""
    toks = _tokens(code)
    stmts, start = [], None  # (first token index, index of its ';')
    for i, (_, _, t) in enumerate(toks):
        if t in "{}":
            start = i + 1
        elif t == ";":
            if start is not None and start < i:
                stmts.append((start, i))
            start = i + 1
    adjacent = [(a, b) for a, b in zip(stmts, stmts[1:]) if b[0] == a[1] + 1]
    if not adjacent:
        return code
    (a0, a1), (b0, b1) = rng.choice(adjacent)
    s1, e1, s2, e2 = toks[a0][0], toks[a1][1], toks[b0][0], toks[b1][1]
    return code[:s1] + code[s2:e2] + code[e1:s2] + code[s1:e1] + code[e2:]


MUTATORS = {"edit": edit, "delete": delete, "rename": rename, "reorder": reorder}


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _one_line(s: str) -> bool:
    return "\n" not in s.strip() and "\r" not in s.strip() and s.strip() != ""


def build_cases(seed: int = 0, refs_per_lang: int = 160, refinement_refs: int = 60) -> list[dict]:
    """Deterministic cases {lang, source, kind, ref, cand}: for every sampled reference one candidate of
    each kind. Java: `refs_per_lang` translation references + `refinement_refs` refinement ones; C#:
    `refs_per_lang` translation references."""
    rng = random.Random(seed)
    trans = []
    for split in ("train", "validation", "test"):
        trans += [(f"code_to_code_trans/{split}#{r['id']}", r) for r in _rows(DATA / "code_to_code_trans" / f"{split}.jsonl")]
    trans = [(src, r) for src, r in trans if _one_line(r["java"]) and _one_line(r["cs"])]
    refine = [(f"code_refinement/small/{split}#{r['id']}", r) for split in ("validation", "test")
              for r in _rows(DATA / "code_refinement" / "small" / f"{split}.jsonl")]
    refine = [(src, r) for src, r in refine if _one_line(r["fixed"]) and _one_line(r["buggy"])]
    cases = []

    def add(lang: str, source: str, ref: str, other: str) -> None:
        ref, other = ref.strip(), other.strip()
        for kind in KINDS:
            cand = other if kind == "other_side" else MUTATORS[kind](ref, rng)
            cases.append({"lang": lang, "source": source, "kind": kind, "ref": ref, "cand": cand.strip()})

    for lang, side, other_side in (("java", "java", "cs"), ("c_sharp", "cs", "java")):
        for src, r in rng.sample(trans, refs_per_lang):
            add(lang, src, r[side], r[other_side])
    for src, r in rng.sample(refine, refinement_refs):
        add("java", src, r["fixed"], r["buggy"])
    return cases


# ------------------------------------------------------------------ scoring
_DRIVER = r"""
import contextlib, io, json, os, re, runpy, sys, tempfile
src, dst = sys.argv[1], sys.argv[2]
cases = json.load(open(src, encoding="utf-8"))
tmp = tempfile.mkdtemp()
ref, hyp = os.path.join(tmp, "ref.txt"), os.path.join(tmp, "hyp.txt")
num = r"([-+0-9.eE]+)"
pat = re.compile(r"ngram match: %s, weighted ngram match: %s, syntax_match: %s, dataflow_match: %s\s*"
                 r"CodeBLEU score:\s+%s" % ((num,) * 5))
out = []
for c in cases:
    with open(ref, "w", encoding="utf-8") as f:
        f.write(c["ref"] + "\n")
    with open(hyp, "w", encoding="utf-8") as f:
        f.write(c["cand"] + "\n")
    sys.argv = ["calc_code_bleu.py", "--refs", ref, "--hyp", hyp, "--lang", c["lang"]]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runpy.run_path("calc_code_bleu.py", run_name="__main__")
    m = pat.search(buf.getvalue())
    out.append([float(x) for x in m.groups()])
with open(dst, "w") as f:
    json.dump(out, f)
"""


def official_dir(path: str) -> Path:
    p = Path(path)
    for cand in (p, p / "Code-Code" / "code-to-code-trans" / "evaluator" / "CodeBLEU"):
        if (cand / "calc_code_bleu.py").exists():
            return cand
    raise SystemExit(f"no calc_code_bleu.py under {p}")


def _official_env(hash_seed: int) -> dict:
    return dict(os.environ, PYTHONHASHSEED=str(hash_seed))


def official_per_case(cases: list[dict], odir: Path, python: str, hash_seed: int = 0) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "cases.json", Path(tmp) / "out.json"
        src.write_text(json.dumps([{k: c[k] for k in ("lang", "ref", "cand")} for c in cases]), encoding="utf-8")
        subprocess.run([python, "-c", _DRIVER, str(src), str(dst)], cwd=odir, env=_official_env(hash_seed), check=True)
        rows = json.loads(dst.read_text())
    return [dict(zip(PARTS, r)) for r in rows]


def official_corpus(cases: list[dict], lang: str, odir: Path, python: str, hash_seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ref, hyp = Path(tmp) / "references.txt", Path(tmp) / "predictions.txt"
        ref.write_text("".join(c["ref"] + "\n" for c in cases), encoding="utf-8")
        hyp.write_text("".join(c["cand"] + "\n" for c in cases), encoding="utf-8")
        out = subprocess.run([python, "calc_code_bleu.py", "--refs", str(ref), "--hyp", str(hyp), "--lang", lang],
                             cwd=odir, env=_official_env(hash_seed), check=True, capture_output=True, text=True).stdout
    vals = [float(x) for x in re.findall(r":\s+([-+0-9.eE]+)", out)]
    return dict(zip(PARTS, vals))


def ours_per_case(cases: list[dict]) -> list[dict]:
    from metrics.code_bleu import code_bleu

    return [code_bleu([c["ref"]], [c["cand"]], c["lang"]) for c in cases]


# ------------------------------------------------------------------ report
def summarize(rows: list[dict], tol: float = 0.005) -> dict:
    diffs = [abs(r["ours"]["codebleu"] - r["official"]["codebleu"]) for r in rows]
    out = {"cases": len(rows), "within_0.005": sum(d <= tol for d in diffs) / len(rows), "max_diff": max(diffs),
           "ngram_parts_exact": all(r["ours"][k] == r["official"][k] for r in rows
                                    for k in ("ngram_match", "weighted_ngram_match"))}
    for k in ("syntax_match", "dataflow_match"):
        out[f"max_diff_{k}"] = max(abs(r["ours"][k] - r["official"][k]) for r in rows)
    out["by_kind_within_0.005"] = {
        kind: round(sum(abs(r["ours"]["codebleu"] - r["official"]["codebleu"]) <= tol for r in g) / len(g), 4)
        for kind in KINDS if (g := [r for r in rows if r["kind"] == kind])}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", required=True, help="scratch checkout of the official CodeBLEU evaluator")
    ap.add_argument("--official-python", required=True, help="Python that runs it (tree_sitter 0.2.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refs", type=int, default=160, help="translation references per language")
    ap.add_argument("--refinement-refs", type=int, default=60, help="code_refinement references (Java)")
    ap.add_argument("--hash-seed", type=int, default=0, help="PYTHONHASHSEED of the official runs")
    ap.add_argument("--dump", help="write every case with both scores to this JSON file")
    args = ap.parse_args(argv)

    odir = official_dir(args.official)
    cases = build_cases(args.seed, args.refs, args.refinement_refs)
    official = official_per_case(cases, odir, args.official_python, args.hash_seed)
    ours = ours_per_case(cases)
    rows = [dict(c, official=o, ours=m) for c, o, m in zip(cases, official, ours)]
    report = {"seed": args.seed, "kinds": Counter(c["kind"] for c in cases)}
    for lang in ("java", "c_sharp"):
        sub = [r for r in rows if r["lang"] == lang]
        report[lang] = summarize(sub)
        from metrics.code_bleu import code_bleu
        corpus_ours = code_bleu([r["ref"] for r in sub], [r["cand"] for r in sub], lang)
        corpus_off = official_corpus(sub, lang, odir, args.official_python, args.hash_seed)
        report[lang]["corpus"] = {"ours": corpus_ours, "official": corpus_off,
                                  "codebleu_diff": abs(corpus_ours["codebleu"] - corpus_off["codebleu"])}
    report["all"] = summarize(rows)
    print(json.dumps(report, indent=1))
    if args.dump:
        Path(args.dump).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    ok = report["all"]["within_0.005"] >= 0.95 and report["all"]["ngram_parts_exact"]
    print(f"cases: java {report['java']['cases']}, c_sharp {report['c_sharp']['cases']}; "
          f"within 0.005: {report['all']['within_0.005']:.1%}; max diff {report['all']['max_diff']:.4f}; "
          f"n-gram parts exactly equal: {report['all']['ngram_parts_exact']} -> {'OK' if ok else 'TARGET MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
