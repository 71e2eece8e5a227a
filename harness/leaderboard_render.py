"""Leaderboard renderers: Markdown, CSV, JSON, LaTeX, and a self-contained HTML page with plots."""
from __future__ import annotations

import csv
import html
import io
import json
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from harness.leaderboard import Board

LEGEND = "best per column in bold; ≈ = not significantly different from the best (paired test, p ≥ 0.05)"


def _records(board: Board) -> list[dict]:
    """One flat dict per row: the common ground of every format."""
    out = []
    for (model, method), cells in sorted(board.rows.items()):
        row = {"model": model, "method": method}
        for task in board.tasks:
            e = cells.get(task)
            row[task] = None if e is None else {
                "metric": board.metric_names[task], "mean": e.mean, "ci_low": e.low, "ci_high": e.high,
                "seeds": len(e.records), "best": e.best, "not_significantly_worse": e.tied_with_best,
                "p_value_vs_best": e.p_value}
        row.update(board.cost[(model, method)])
        row["link"] = board.links[(model, method)]
        out.append(row)
    return out


def _cell(e: dict | None, bold: Callable[[str], str], tie: str) -> str:
    if e is None:
        return "-"
    text = f"{e['mean']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}]"
    return bold(text) if e["best"] else text + (f" {tie}" if e["not_significantly_worse"] else "")


def _cost_cells(r: dict) -> list[str]:
    return [f"{100 * r['trainable_share']:.2f}%", f"{r['peak_memory_bytes'] / 2**20:.0f} MiB", f"{r['train_seconds']:.1f}"]


def _header(board: Board) -> list[str]:
    return ["model", "method", *[f"{t} ({board.metric_names[t]})" for t in board.tasks],
            "trainable", "peak memory", "train s", "run"]


def markdown(board: Board) -> str:
    lines = ["| " + " | ".join(_header(board)) + " |", "|" + "---|" * len(_header(board))]
    for r in _records(board):
        cells = [_cell(r[t], lambda s: f"**{s}**", "≈") for t in board.tasks]
        link = f"[run]({r['link']})" if r["link"].startswith("http") else r["link"]
        lines.append("| " + " | ".join([r["model"], r["method"], *cells, *_cost_cells(r), link]) + " |")
    return "\n".join(lines) + f"\n\n{LEGEND}\n"


def latex(board: Board) -> str:
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    head = " & ".join(esc(h) for h in _header(board)[:-1])
    body = [" & ".join([esc(r["model"]), esc(r["method"]),
                        *[_cell(r[t], lambda s: rf"\textbf{{{s}}}", r"$\approx$") for t in board.tasks],
                        *(esc(c) for c in _cost_cells(r))]) + r" \\" for r in _records(board)]
    cols = "ll" + "r" * (len(board.tasks) + 3)
    return "\n".join([rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", f"% {LEGEND}"]) + "\n"


def as_csv(board: Board) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model", "method", "task", "metric", "mean", "ci_low", "ci_high", "seeds", "best",
                     "not_significantly_worse", "p_value_vs_best", "trainable_share", "trainable_params",
                     "peak_memory_bytes", "train_seconds", "link"])
    for r in _records(board):
        for t in board.tasks:
            if r[t] is not None:
                e = r[t]
                writer.writerow([r["model"], r["method"], t, e["metric"], e["mean"], e["ci_low"], e["ci_high"],
                                 e["seeds"], e["best"], e["not_significantly_worse"], e["p_value_vs_best"],
                                 r["trainable_share"], r["trainable_params"], r["peak_memory_bytes"],
                                 r["train_seconds"], r["link"]])
    return buf.getvalue()


def as_json(board: Board) -> str:
    return json.dumps({"tasks": board.tasks, "metrics": board.metric_names, "legend": LEGEND,
                       "rows": _records(board)}, indent=2) + "\n"


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten by a cheaper-or-equal point with a higher-or-equal score."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def _plots(board: Board) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_spec = [("trainable_params", "trainable parameters", 1, "log"),
                 ("peak_memory_bytes", "peak memory (MiB)", 2**20, "linear")]
    fig, axes = plt.subplots(len(board.tasks), 2, figsize=(11, 4 * len(board.tasks)), squeeze=False)
    for i, task in enumerate(board.tasks):
        for j, (key, label, unit, scale) in enumerate(axes_spec):
            ax = axes[i][j]
            pts = [(board.cost[row][key] / unit, cells[task].mean, f"{row[0]}/{row[1]}")
                   for row, cells in board.rows.items() if task in cells]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts])
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
            front = _pareto([(x, y) for x, y, _ in pts])
            ax.plot([p[0] for p in front], [p[1] for p in front], "r--", drawstyle="steps-post", label="Pareto front")
            ax.set_xscale(scale)
            ax.set(xlabel=label, ylabel=f"{task} {board.metric_names[task]}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return buf.getvalue()[buf.getvalue().index("<svg"):]


def as_html(board: Board) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(board))
    body = []
    for r in _records(board):
        cells = [_cell(r[t], lambda s: f"<strong>{s}</strong>", "≈") for t in board.tasks]
        link = f'<a href="{html.escape(r["link"])}">run</a>' if r["link"].startswith("http") else html.escape(r["link"])
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in
                                     [html.escape(r["model"]), html.escape(r["method"]), *cells, *_cost_cells(r), link]) + "</tr>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Leaderboard</title><style>{style}</style></head>"
            f"<body><h1>Leaderboard</h1><table><tr>{head}</tr>{''.join(body)}</table><p>{html.escape(LEGEND)}</p>"
            f"<h2>Score against cost</h2>{_plots(board)}</body></html>\n")


RENDERERS: dict[str, Callable[[Board], str]] = {
    "md": markdown, "csv": as_csv, "json": as_json, "html": as_html, "latex": latex}
