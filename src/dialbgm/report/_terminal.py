"""Terminal output of a run: the metrics table with intervals, attrition and cache use."""

from __future__ import annotations

from pathlib import Path
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
    scored = f"({metrics['n_items']} of {metrics['n_total']} items scored)"
    title = f"{judge} on {shown_path(manifest['dataset']['path'])} {scored}"
    # As wide as its title where the terminal allows: a title wrapped inside a narrow table is hard to read.
    table = Table(title=title, min_width=min(len(title), console.width))
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("chance", justify="right")
    human = metrics.get("human_ceiling")
    if human:
        table.add_column("human", justify="right")
        table.add_column("of human", justify="right")
    for m in METRICS:
        mean = metrics[m]
        ci = metrics["ci95"][m]
        chance = metrics["chance"].get(m)
        table.add_row(
            LABELS[m],
            "-" if mean is None else f"{mean:.3f}",
            # One item has no spread to resample: its "interval" would be the point itself.
            "-" if ci is None else "n/a (1 item)" if metrics["n_items"] == 1 else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            "" if chance is None else f"{chance:.3f}",
            *(human_cells(human, m) if human else ()),
        )
    console.print(table)
    if human:
        console.print(
            f"human: the ceiling (each annotator against the consensus of the others) on the {human['n_items']} "
            "scored items with >= 2 annotators; of human = the judge's mean / the ceiling's on those items"
        )
    if "n_groups" in metrics:
        console.print(f"intervals: cluster bootstrap over {metrics['n_groups']} groups of items (items name a group)")
    failed = ", ".join(f"{k}={v}" for k, v in metrics["failed_by_status"].items()) or "none"
    console.print(f"failed items: {metrics['n_failed']} ({failed})")
    console.print(
        f"units: {c['units']}  cache hits: {c['cache_hits']}  provider calls: {c['provider_calls']}"
        + (f"  computed locally: {c['computed_locally']}" if c["computed_locally"] else "")
    )
    first = metrics.get("first_judgement")
    if first:
        console.print(
            f"{metrics['judgements_per_item']} judgements per item, aggregated by {metrics['aggregation']}; "
            f"Hit@1 of the first judgement alone: {first['means']['hit_at_1']:.3f}, "
            f"Kendall tau-b: {first['means']['kendall_tau_b']:.3f}"
        )
    bias = metrics.get("bias") or {}
    if "top1_by_position" in bias:
        pos = bias["top1_by_position"]
        rates = " ".join(f"{k}:{r:.2f}" for k, r in zip(pos["keys"], pos["rates"], strict=True))
        lab = bias["top1_by_label"]
        lab_rates = " ".join(f"{k}:{r:.2f}" for k, r in zip(lab["keys"], lab["rates"], strict=True))
        line = f"top-1 by position {rates} (chi2 p={pos['p_value']:.3g}); by label {lab_rates} (p={lab['p_value']:.3g})"
        if bias.get("position_consistency") is not None:
            line += f"; position consistency {bias['position_consistency']:.2f}"
        if bias.get("flip_rate") is not None:
            line += f"; flip rate between samples {bias['flip_rate']:.2f}"
        line += f"; tie rate {bias['tie_rate']:.2f}"
        console.print(line)
    # Never folded: a path cut over two lines cannot be pasted back.
    console.print(f"results: {shown_path(out_dir)}  ({manifest['wall_s']:.2f} s)", soft_wrap=True)


def human_cells(human: dict[str, Any], m: str) -> tuple[str, str]:
    """The human ceiling's mean and the judge's fraction of it, for one metric's row."""
    mean, frac = human["means"].get(m), human["fraction_of_ceiling"].get(m)
    return ("-" if mean is None else f"{mean:.3f}", "-" if frac is None else f"{frac:.0%}")


def shown_path(path: str | Path) -> str:
    """A path as a reader wants it at a terminal: relative to the current folder when under it,
    ``built-in NAME`` for a file shipped with dialbgm, else as recorded (the files keep it whole)."""
    from dialbgm.config import builtin_root

    p = Path(path)
    if not p.is_absolute():
        return str(p)
    here, builtin = Path.cwd().resolve(), builtin_root()
    if p.is_relative_to(here):
        return str(p.relative_to(here))
    if builtin is not None and p.is_relative_to(builtin):
        return f"built-in {p.relative_to(builtin)}"
    return str(p)
