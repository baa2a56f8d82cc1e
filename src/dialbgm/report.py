"""Terminal output of a run: the metrics table with intervals, attrition and cache use."""

from __future__ import annotations

from typing import Any

from dialbgm.metrics import METRICS

LABELS = {
    "hit_at_1": "Hit@1",
    "hit_at_2": "Hit@2",
    "mrr": "MRR",
    "ndcg": "NDCG",
    "kendall_tau_b": "Kendall tau-b",
    "spearman": "Spearman",
}


def print_run(manifest: dict[str, Any], metrics: dict[str, Any], out_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    judge = manifest["config"]["judge"]["name"]
    c = manifest["counts"]
    table = Table(
        title=f"{judge} on {manifest['dataset']['path']} ({metrics['n_items']} of {metrics['n_total']} items scored)"
    )
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("chance", justify="right")
    for m in METRICS:
        mean = metrics[m]
        ci = metrics["ci95"][m]
        chance = metrics["chance"].get(m)
        table.add_row(
            LABELS[m],
            "-" if mean is None else f"{mean:.3f}",
            "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            "" if chance is None else f"{chance:.3f}",
        )
    console.print(table)
    failed = ", ".join(f"{k}={v}" for k, v in metrics["failed_by_status"].items()) or "none"
    console.print(f"failed items: {metrics['n_failed']} ({failed})")
    console.print(
        f"units: {c['units']}  cache hits: {c['cache_hits']}  provider calls: {c['provider_calls']}"
        + (f"  computed locally: {c['computed_locally']}" if c["computed_locally"] else "")
    )
    console.print(f"results: {out_dir}  ({manifest['wall_s']:.2f} s)")
