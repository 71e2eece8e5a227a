"""What a person reads at the end of a cell or a sweep."""
from __future__ import annotations

from typing import Any, Iterable

from harness.redact import redact

UI_HINT = "mlflow ui --host 127.0.0.1 --backend-store-uri {uri}"  # loopback: the UI is for this machine
SERVER_HINT = "{uri}/#/experiments"  # a tracking server serves its own UI


def _fmt_bytes(n: float | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def cell_summary(result: dict[str, Any], tracking_uri: str | None, out_dir: str) -> str:
    name = f"{result['task']} / {result['model']} / {result['method']} / seed {result['seed']}"
    lines = [f"== {name}: {result['status']} =="]
    if result.get("reason"):
        lines.append(f"reason: {result['reason']}")
    key = result.get("primary_metric")
    if key and result["status"] == "FINISHED":
        ci = result["confidence_intervals"].get(key)
        ci_text = f"  (95% CI {ci[0]:.4f} .. {ci[1]:.4f})" if ci else ""
        before = result["untrained_metrics"].get(key)
        before_text = f"; untrained, same split: {before:.4f}" if before is not None else ""
        lines.append(f"score: {key} = {result['metrics'][key]:.4f}{ci_text}{before_text}")
        others = ", ".join(f"{k} = {v:.4f}" for k, v in result["metrics"].items() if k != key)
        if others:
            lines.append(f"       {others}")
        c = result["cost"]
        lines.append(
            f"cost: {c['trainable_params']:,} trainable of {c['total_params']:,} params "
            f"({100 * c['trainable_share']:.2f}%), train {c['train_seconds']:.1f} s, "
            f"{c['tokens_per_second']:,.0f} tokens/s, peak memory {_fmt_bytes(c['peak_memory_bytes'])}, "
            f"base weights {_fmt_bytes(c['base_weight_bytes'])}, adapter {_fmt_bytes(c['adapter_bytes'])}")
    lines.append(f"result: {out_dir}/result.json")
    if tracking_uri and result.get("mlflow_run_id"):
        uri = redact(tracking_uri)
        hint = SERVER_HINT if uri.startswith(("http://", "https://")) else UI_HINT
        lines.append(f"MLflow run {result['mlflow_run_id']}; open the UI: {hint.format(uri=uri.rstrip('/'))}")
    return "\n".join(lines)


def comparison(results: Iterable[dict[str, Any]]) -> str:
    """A Markdown table of the cells of a sweep, best primary score first."""
    rows = sorted(results, key=lambda r: (r["status"] != "FINISHED", -(r.get("primary_value") or 0.0)))
    head = ("| cell | status | score | 95% CI | untrained | trainable | train s | tokens/s | peak mem |\n"
            "|---|---|---|---|---|---|---|---|---|")
    body = []
    for r in rows:
        key, c = r.get("primary_metric"), r.get("cost") or {}
        cell = f"{r['task']}/{r['model']}/{r['method']}/seed{r['seed']}"
        if r["status"] != "FINISHED":
            body.append(f"| {cell} | {r['status']}: {(r.get('reason') or '')[:80]} | | | | | | | |")
            continue
        ci = r["confidence_intervals"].get(key, [None, None])
        before = r["untrained_metrics"].get(key)
        body.append(
            f"| {cell} | FINISHED | {key} {r['primary_value']:.4f} | "
            f"{ci[0]:.4f}..{ci[1]:.4f} | {'-' if before is None else f'{before:.4f}'} | "
            f"{c['trainable_params']:,} ({100 * c['trainable_share']:.2f}%) | {c['train_seconds']:.1f} | "
            f"{c['tokens_per_second']:,.0f} | {_fmt_bytes(c['peak_memory_bytes'])} |")
    return "\n".join([head, *body])
