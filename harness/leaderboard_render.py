"""Leaderboard renderers: Markdown, CSV, JSON, LaTeX, and a self-contained HTML page with plots.

One table per task: its entries (score, interval, seeds, the test against the best, the entry's own
cost on that task, comparability), then its reference rows (published baselines, the naive
baseline). Every format says what every mark means.
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlparse

if TYPE_CHECKING:
    from harness.leaderboard import Board

LEGEND = ("per task: the mean over seeds with a 95% interval (bootstrap over test examples, seeds averaged) and n "
          "seeds; best in bold; ≈ = not significantly different from the best (paired test over the shared seeds, "
          "Holm-adjusted p ≥ 0.05); n/a = no test possible, with the reason; ⚠ = degenerate (≥ 95% one class, or "
          "not above the naive baseline); † = not comparable with published results (not the official splits); "
          "forgetting = retention loss after − before training on held-out code (trainer.retention; > 0: forgot), "
          "blank where not measured")
HEADER = ["model", "method", "score", "seeds", "vs best (p, Holm)", "flags", "trainable", "peak memory", "train s",
          "forgetting (Δ loss)", "run"]


def entries(board: Board) -> list[dict]:
    """One flat dict per (model, method, task): the common ground of every format."""
    out = []
    for task in board.tasks:
        for (model, method), cells in sorted(board.rows.items()):
            e = cells.get(task)
            if e is None:
                continue
            why_not = sorted({(r.get("data") or {}).get("why_not_comparable") or "" for r in e.records} - {""})
            out.append({"task": task, "model": model, "method": method, "metric": board.metric_names[task],
                        "mean": e.mean, "ci_low": e.low, "ci_high": e.high, "interval": e.interval, "seeds": e.seeds,
                        "seed_std": e.seed_std, "best": e.best, "p_value": e.p_value, "p_adjusted": e.p_adjusted,
                        "tied_with_best": e.tied_with_best, "untestable_reason": e.untestable_reason,
                        "degenerate": e.degenerate, "comparable": e.comparable, "why_not_comparable": why_not,
                        "cost": e.cost, "link": e.link, "search": _search(e.records)})
    return out


def _search(records: list[dict]) -> dict | None:
    """A searched entry's search (harness/search.py writes it on its final cells): best of N trials
    on validation, their cost and spread, the failed and pruned counts; None for a plain entry."""
    block = next((r["search"] for r in records if (r.get("search") or {}).get("role") == "final"), None)
    return {k: v for k, v in block.items() if k != "role"} if block else None


def _score(e: dict, bold: Callable[[str], str]) -> str:
    text = f"{e['mean']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}]"
    return bold(text) if e["best"] else text


def _versus(e: dict) -> str:
    if e["best"]:
        return "best"
    if e["untestable_reason"]:
        return e["untestable_reason"]
    mark = "≈ " if e["tied_with_best"] else ""
    return f"{mark}p={e['p_value']:.3g}, adj {e['p_adjusted']:.3g}"


def _flags(e: dict) -> str:
    flags = ([f"⚠ {e['degenerate']}"] if e["degenerate"] else []) + ([] if e["comparable"] else ["†"])
    if s := e.get("search"):
        flags.append(f"best of {s['trials']} trials (validation {s['validation_score']:.4f}, trials "
                     f"{s['spread']['min']:.4f}..{s['spread']['max']:.4f}, search {s['search_seconds']:.0f} s)")
    return "; ".join(flags)


def _cost(e: dict) -> list[str]:
    c, forgot = e["cost"], e["cost"].get("retention.delta_loss")
    return [f"{100 * c['trainable_share']:.2f}%", f"{c['peak_memory_bytes'] / 2**20:.0f} MiB",
            f"{c['train_seconds']:.1f}", "" if forgot is None else f"{forgot:+.3g}"]


def _cells(e: dict, bold: Callable[[str], str]) -> list[str]:
    return [e["model"], e["method"], _score(e, bold), str(e["seeds"]), _versus(e), _flags(e), *_cost(e)]


def _reference_cells(ref: dict) -> list[str]:
    return [ref["kind"], ref["name"], f"{ref['value']:.4f}", "", "reference", ref.get("source", ""), "", "", "", ""]


def md_escape(text: str) -> str:
    """Text in a Markdown table cell: an HTML tag shows as written, a pipe does not end the cell."""
    return html.escape(str(text), quote=False).replace("|", r"\|")


def is_web_link(link: str) -> bool:
    """Only http(s) links become anchors (never javascript: or data: URLs)."""
    return urlparse(link).scheme in ("http", "https")


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "≈": r"$\approx$",
                 "Δ": r"$\Delta$", "−": "-"}


def latex_escape(text: str) -> str:
    return re.sub("|".join(map(re.escape, LATEX_SPECIAL)), lambda m: LATEX_SPECIAL[m.group()], str(text))


def _latex_cells(e: dict) -> list[str]:
    cells = [latex_escape(c) for c in _cells(e, lambda s: s)]
    if e["best"]:
        cells[2] = rf"\textbf{{{cells[2]}}}"
    return cells


def markdown(board: Board) -> str:
    out = []
    for task in board.tasks:
        out += [f"## {md_escape(task)} ({md_escape(board.metric_names[task])})", "",
                "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        for e in (e for e in entries(board) if e["task"] == task):
            link = f"[run](<{md_escape(e['link'])}>)" if is_web_link(e["link"]) else md_escape(e["link"])
            cells = [md_escape(c) for c in _cells(e, lambda s: s)]
            if e["best"]:
                cells[2] = f"**{cells[2]}**"
            out.append("| " + " | ".join([*cells, link]) + " |")
        out += ["| " + " | ".join([*map(md_escape, _reference_cells(r)), ""]) + " |"
                for r in board.references.get(task, [])]
        out.append("")
    return "\n".join(out) + f"\n{LEGEND}\n"


def latex(board: Board) -> str:
    esc = latex_escape
    out = []
    for task in board.tasks:
        out += [rf"% {esc(task)} ({esc(board.metric_names[task])})", r"\begin{tabular}{llrrllrrrr}", r"\toprule",
                " & ".join(esc(h) for h in HEADER[:-1]) + r" \\", r"\midrule"]
        out += [" & ".join(_latex_cells(e)) + r" \\" for e in entries(board) if e["task"] == task]
        out += [" & ".join(esc(c) for c in _reference_cells(r)) + r" \\" for r in board.references.get(task, [])]
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out) + f"% {LEGEND}\n"


def as_csv(board: Board) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    cols = ["task", "kind", "model", "method", "metric", "mean", "ci_low", "ci_high", "seeds", "best", "p_value",
            "p_adjusted", "tied_with_best", "untestable_reason", "degenerate", "comparable", "trainable_share",
            "trainable_params", "peak_memory_bytes", "train_seconds", "retention.delta_loss", "link"]
    writer.writerow(cols)
    for e in entries(board):
        row = {**e, **e["cost"], "kind": "entry"}
        writer.writerow([row.get(c) for c in cols])
    for task, refs in board.references.items():
        for r in refs:
            writer.writerow([task, r["kind"], r["kind"], r["name"], board.metric_names[task], r["value"]] +
                            [None] * (len(cols) - 7) + [r.get("source")])
    return buf.getvalue()


def as_json(board: Board) -> str:
    rows: dict[tuple[str, str], dict] = {}
    for e in entries(board):
        row = rows.setdefault((e["model"], e["method"]), {"model": e["model"], "method": e["method"], "link": e["link"]})
        row[e["task"]] = {k: v for k, v in e.items() if k not in ("task", "model", "method", "link")}
    return json.dumps({"tasks": board.tasks, "metrics": board.metric_names, "legend": LEGEND,
                       "rows": list(rows.values()), "references": board.references}, indent=2) + "\n"


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten by a cheaper-or-equal point with a higher-or-equal score."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def _plain(text: str) -> str:
    """Text matplotlib draws as written: a $ would start mathtext."""
    return str(text).replace("$", r"\$")


def _plots(board: Board) -> str:
    """Per task: score against the entries' own trainable parameters, peak memory and forgetting
    (retention delta loss, where measured) on that task, the Pareto front, and the reference rows
    as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_spec = [("trainable_params", "trainable parameters", 1, "log"),
                 ("peak_memory_bytes", "peak memory (MiB)", 2**20, "linear"),
                 ("retention.delta_loss", "forgetting: retention loss after - before", 1, "linear")]
    fig, axes = plt.subplots(len(board.tasks), 3, figsize=(16, 4 * len(board.tasks)), squeeze=False)
    for i, task in enumerate(board.tasks):
        mine = [e for e in entries(board) if e["task"] == task]
        for j, (key, label, unit, scale) in enumerate(axes_spec):
            ax = axes[i][j]
            pts = [((max(e["cost"][key], 1) if scale == "log" else e["cost"][key]) / unit, e["mean"],
                    _plain(f"{e['model']}/{e['method']}")) for e in mine if e["cost"].get(key) is not None]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts])
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
            front = _pareto([(x, y) for x, y, _ in pts])
            ax.plot([p[0] for p in front], [p[1] for p in front], "r--", drawstyle="steps-post", label="Pareto front")
            for ref in board.references.get(task, []):
                ax.axhline(ref["value"], color="grey", linestyle=":", linewidth=1)
                ax.annotate(_plain(f"{ref['kind']}: {ref['name']}"), (0, ref["value"]),
                            xycoords=("axes fraction", "data"), fontsize=7, color="grey")
            ax.set_xscale(scale)
            ax.set(xlabel=_plain(f"{label} (on {task})"), ylabel=_plain(f"{task} {board.metric_names[task]}"))
            if pts:
                ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return buf.getvalue()[buf.getvalue().index("<svg"):]


def as_html(board: Board) -> str:
    sections = []
    for task in board.tasks:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
        body = []
        for e in (e for e in entries(board) if e["task"] == task):
            link = f'<a href="{html.escape(e["link"])}">run</a>' if is_web_link(e["link"]) else html.escape(e["link"])
            cells = [html.escape(c) for c in _cells(e, lambda s: s)]
            if e["best"]:
                cells[2] = f"<strong>{cells[2]}</strong>"
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, link]) + "</tr>")
        body += ["<tr class='ref'>" + "".join(f"<td>{html.escape(c)}</td>" for c in [*_reference_cells(r), ""]) + "</tr>"
                 for r in board.references.get(task, [])]
        sections.append(f"<h2>{html.escape(task)} ({html.escape(board.metric_names[task])})</h2>"
                        f"<table><tr>{head}</tr>{''.join(body)}</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
             "tr.ref td{color:#666;font-style:italic}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Leaderboard</title><style>{style}</style></head>"
            f"<body><h1>Leaderboard</h1>{''.join(sections)}<p>{html.escape(LEGEND)}</p>"
            f"<h2>Score against cost</h2>{_plots(board)}</body></html>\n")


RENDERERS: dict[str, Callable[[Board], str]] = {
    "md": markdown, "csv": as_csv, "json": as_json, "html": as_html, "latex": latex}
