"""``dialbgm agreement``: how far a data file's annotators agree, and the human ceiling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._common import fail, workspace

CAMPAIGN_MODULE = "dialbgm.web"
CAMPAIGN_HOOK = "campaign_dataset"
"""``dialbgm.web.campaign_dataset(workspace, name)`` resolves an annotation campaign's name to its
exported data (a ``Dataset`` or the path of a data file), or returns None for no such campaign.
Looked up by name so this command works before (and without) the web stage."""


def register(app: typer.Typer) -> None:
    app.command()(agreement)


def agreement(
    source: Annotated[
        str, typer.Argument(metavar="DATA_OR_CAMPAIGN", help="A data file with annotations, or a campaign.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print every figure as JSON.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write every figure as JSON into this file.")] = None,
) -> None:
    """Agreement among the annotators: Kendall's W with the Friedman test, Krippendorff's alpha
    (ordinal) with a bootstrap interval, pairwise Kendall tau-b, and the human ceiling (each
    annotator scored against the consensus of the others, on a judge's metrics)."""
    from dialbgm.analysis import campaign_agreement
    from dialbgm.errors import DialbgmError

    try:
        result = campaign_agreement(resolve(source))
        if out is not None:
            from dialbgm.storage import write_json, writing

            with writing(out):
                write_json(out, result)
    except DialbgmError as e:
        fail(e)
        return
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_agreement(result)


def resolve(source: str) -> Any:
    """The dataset a command-line argument names: a data file, else a campaign (through the hook)."""
    import importlib

    from dialbgm.data import load_dataset
    from dialbgm.errors import InputError

    path = Path(source)
    if path.exists():
        return load_dataset(path.absolute())
    try:
        find = getattr(importlib.import_module(CAMPAIGN_MODULE), CAMPAIGN_HOOK, None)
    except ModuleNotFoundError:
        find = None
    found = find(workspace(), source) if find is not None else None
    if found is None:
        raise InputError(f"{source}: no such file or campaign")
    return load_dataset(found) if isinstance(found, str | Path) else found


SHORT = {"kendall_tau_b": "tau-b", "spearman": "rho"}


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(d: dict[str, Any]) -> str:
    return "-" if d.get("ci_low") is None else f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def print_agreement(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from dialbgm.metrics import METRICS
    from dialbgm.report import LABELS

    console = Console()
    console.print(
        f"{r['data']}: {r['n_items_annotated']} of {r['n_items']} items annotated, {r['n_items_multi']} by "
        f"two or more of {len(r['annotators'])} annotators",
        soft_wrap=True,
    )
    w, a = r["kendall_w"], r["krippendorff_alpha"]
    fr = w.get("friedman")
    console.print(
        f"Kendall's W (mean over {w['n_items']} items, ties corrected): {_f(w['w'])} 95% CI {_ci(w)}"
        + (f"; Friedman chi2 = {fr['chi2']:.2f}, df = {fr['df']}, p = {fr['p_value']:.3g}" if fr else "")
        + (f"; undefined on {w['n_items_undefined']} items (all tied)" if w["n_items_undefined"] else "")
    )
    console.print(
        f"Krippendorff's alpha (ordinal, {a['n_units']} units, {a['n_values']} pairable values): "
        f"{_f(a['alpha'])} 95% CI {_ci(a)}"
    )
    pt = r["pairwise_tau_b"]
    table = Table(title=f"pairwise Kendall tau-b (mean over pairs {pt['mean_over_pairs']:.3f})")
    for col in ("annotator", "annotator", "items", "mean tau-b"):
        table.add_column(col, justify="right" if col in ("items", "mean tau-b") else "left")
    for p in pt["pairs"]:
        table.add_row(p["a"], p["b"], str(p["n_items"]), f"{p['mean_tau_b']:.3f}")
    console.print(table)
    h = r["human_ceiling"]
    if not h["metrics"]:
        console.print("human ceiling: no annotator could be scored (no other annotator's consensus orders anything)")
        return
    table = Table(title=f"human ceiling ({h['n_items']} items)")
    for col in ("metric", "ceiling", "95% CI"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in METRICS:
        table.add_row(LABELS[m], _f(h["metrics"][m]["mean"]), _ci(h["metrics"][m]))
    console.print(table)
    console.print(f"consensus of the others by the items' rule: {', '.join(h['consensus'])}")
    table = Table(title="each annotator against the consensus of the others")
    table.add_column("annotator")
    table.add_column("items", justify="right")
    for m in METRICS:
        table.add_column(SHORT.get(m, LABELS[m]), justify="right")
    for who, row in h["annotators"].items():
        table.add_row(who, str(row["n_items"]), *(_f(row["metrics"][m]["mean"]) for m in METRICS))
    console.print(table)
    if h["n_left_out"]:
        console.print(
            f"{h['n_left_out']} of {h['n_pairs']} (annotator, item) pairs left out: "
            "the others' consensus ties every clip"
        )
