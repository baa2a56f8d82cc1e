"""The experiment commands: ``compare``, ``report`` and ``diff``, added to the main app by :func:`register`.

Only typer is imported at module level: numpy, the runner and litellm load inside the commands,
so ``dialbgm --help`` pays nothing for them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._batch import BatchOpt


def _fail(e: Exception) -> None:
    from dialbgm.errors import DialbgmError

    code = e.exit_code if isinstance(e, DialbgmError) else 1
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _usd(x: float | None) -> str:
    return "unknown" if x is None else f"${x:.4f}"


def _console() -> Any:
    from rich.console import Console

    # Piped output gets the whole table, not an 80-column one with elided numbers.
    return Console(width=None if sys.stdout.isatty() else 220)


def print_eval_plan(ws: Any, judge: str, data: Any, limit: int | None, overrides: dict[str, Any] | None) -> None:
    """``eval --dry-run``: the table of ``compare --dry-run`` for one judge on one data file."""
    from dialbgm.config import load_prices
    from dialbgm.run import plan_eval

    _print_plans(plan_eval(ws, judge, data, limit, overrides), load_prices(ws).label())


def _print_plans(plans: list[Any], prices_label: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="dry run: nothing will be called")
    t.add_column("cell", no_wrap=True)
    t.add_column("model")
    for col in ("calls", "cached", "to call", "prompt tokens (est.)", "max cost (est.)", "as batch (est.)"):
        t.add_column(col, justify="right")
    for p in plans:
        t.add_row(
            escape(p.cell_id + (" (finished: reused)" if p.reused else "")),
            p.model or p.provider_kind,
            str(p.calls),
            str(p.cached),
            str(p.uncached),
            f"~{p.prompt_tokens_est:,}",
            _usd(p.cost_est),
            _usd(p.cost_batch_est),
        )
    console = _console()
    console.print(t)
    known = [p.cost_est for p in plans if p.cost_est is not None]
    unknown = [p.cell_id for p in plans if p.cost_est is None]
    batch = [p.cost_batch_est for p in plans if p.cost_batch_est is not None]
    no_batch = [p.cell_id for p in plans if p.cost_batch_est is None]
    console.print(
        f"total to call: {sum(p.uncached for p in plans)}  estimated cost: ${sum(known):.4f}"
        + (f" + unknown ({', '.join(unknown)})" if unknown else "")
        + f"  as batch: ${sum(batch):.4f}"
        + (f" + unknown ({', '.join(no_batch)})" if no_batch else "")
    )
    _print_notes(console, plans)
    console.print(
        "prompt tokens = characters / 4 of the uncached requests (an estimate, not a tokenizer count); "
        f"cost = that input plus every reply at its max_tokens cap (an upper bound), {prices_label}; "
        "as batch = the same tokens at the table's batch rates (unknown where it cites none). "
        "Offline judges (random, embedding, clap, local) cost 0; random is computed, never cached or called. "
        "A (summaries) row counts the summaries a cell's summarizer writes first (once for all cells), and "
        "that cell's prompts count each unwritten summary at the summarizer's max_tokens."
    )


def _print_notes(console: Any, plans: list[Any]) -> None:
    """Each note once, with the cells it holds for (a CLAP judge's absent weights: one per judge)."""
    from rich.markup import escape

    by_note: dict[str, list[str]] = {}
    for p in plans:
        if p.note:
            by_note.setdefault(p.note, []).append(p.cell_id)
    for note, cells in by_note.items():
        console.print(
            escape(
                f"note: {note}; their calls are listed (computed locally, $0) and none counted as cached, "
                "and a run of these cells stops until the weights are there:"
            ),
            soft_wrap=True,
        )
        for cell in cells:
            console.print(f"  {escape(cell)}", soft_wrap=True)


def _print_result(result: dict[str, Any]) -> None:
    from rich.table import Table

    from dialbgm.metrics import METRICS
    from dialbgm.report import LABELS, print_human

    console = _console()
    t = Table(title="leaderboard (mean [95% CI])")
    t.add_column("cell", no_wrap=True)
    t.add_column("scored", justify="right")
    t.add_column("parse/transport fail.", justify="right")
    for m in METRICS:
        t.add_column(LABELS[m], justify="right")
    for r in result["leaderboard"]:
        vals = []
        for m in METRICS:
            x = r["metrics"][m]
            if x["mean"] is None:
                vals.append("-")
            elif r["n_items"] == 1:  # one item: no interval (a bootstrap of one value is the value)
                vals.append(f"{x['mean']:.3f}")
            else:
                vals.append(f"{x['mean']:.3f} [{x['ci_low']:.2f}, {x['ci_high']:.2f}]")
        t.add_row(
            r["cell_id"],
            f"{r['n_items']}/{r['n_total']}",
            f"{r['items_failed_parse']}/{r['items_failed_transport']}",
            *vals,
        )
    console.print(t)
    print_human(console, result.get("human"))
    if result["comparisons"]:
        c = Table(title="paired comparisons, B − A on common items (Holm-adjusted p)")
        for col in ("A", "B", "n", *(LABELS[m] for m in METRICS)):
            c.add_column(col, justify="left" if col in ("A", "B") else "right")
        for comp in result["comparisons"]:
            vals = []
            for m in METRICS:
                x = comp["metrics"][m]
                if x.get("diff") is None:
                    vals.append("-")
                    continue
                star = "*" if x.get("significant") else ""
                vals.append(f"{x['diff']:+.3f}{star} p={x['p_holm']:.3f}")
            c.add_row(comp["a"], comp["b"], str(comp["n_common"]), *vals)
        console.print(c)
        console.print("* significant at 0.05 after Holm's adjustment over every test above.")


def compare_cmd(
    experiment: Annotated[str, typer.Argument(help="An experiment file, or a name in experiments/.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print calls, cache hits and estimated cost per cell; call nothing.")
    ] = False,
    max_cost: Annotated[
        float | None,
        typer.Option("--max-cost", help="Refuse to start (exit 2) if the uncached calls may cost more (USD).", min=0),
    ] = None,
    flips: Annotated[int, typer.Option(help="Monte Carlo sign flips per test (when not exact).", min=1000)] = 10_000,
    batch: BatchOpt = False,
) -> None:
    """Run every cell of an experiment (from the cache where possible), then compare them."""
    from dialbgm.config import find_workspace, load_experiment, load_prices
    from dialbgm.errors import DialbgmError
    from dialbgm.run import budget_problem, plan_cells, run_cells

    try:
        ws = find_workspace()
        exp = load_experiment(ws, experiment)
        if dry_run or max_cost is not None:
            plans = plan_cells(ws, exp)
            if dry_run:
                _print_plans(plans, load_prices(ws).label())
                return
            assert max_cost is not None
            problem = budget_problem(plans, max_cost)
            if problem:
                typer.secho(f"error: {problem}; nothing was called", fg=typer.colors.RED, err=True)
                raise typer.Exit(2)

        def progress(k: int, n: int, cell: Any) -> None:
            typer.echo(f"[{k + 1}/{n}] {cell.cell_id}", err=True)

        t0 = time.perf_counter()
        rows = run_cells(ws, exp, progress=progress, batch=True if batch else None)
        t1 = time.perf_counter()
        from dialbgm.analysis import analyse, write_comparison

        out = exp.out_dir(ws)
        result = analyse(out, ws=ws, n_flips=flips)
        result["runs"] = rows
        t2 = time.perf_counter()
        path = write_comparison(out, result)
        t3 = time.perf_counter()
    except DialbgmError as e:
        _fail(e)
        return
    _print_result(result)
    calls = sum(r["provider_calls"] for r in rows)
    hits = sum(r["cache_hits"] for r in rows)
    typer.echo(f"cells: {len(rows)}  provider calls: {calls}  cache hits: {hits}")
    typer.echo(f"comparison: {path}   (HTML/Markdown: dialbgm report {out})")
    typer.echo(f"time: runs {t1 - t0:.2f} s · statistics {t2 - t1:.2f} s · writing {t3 - t2:.2f} s", err=True)


def report_cmd(
    folder: Annotated[Path, typer.Argument(help="A run folder or an experiment folder (results/experiments/NAME).")],
    pair: Annotated[
        tuple[str, str] | None,
        typer.Option("--pair", help="The two cells whose disagreements to show (default: the first comparison)."),
    ] = None,
    pair_by_content: Annotated[
        bool,
        typer.Option(
            "--pair-by-content",
            help="Cells run on different data files: compare only the items whose content is identical in both.",
        ),
    ] = False,
) -> None:
    """Write report.html (self-contained) and report.md into the folder, from its files alone."""
    from dialbgm.config import find_workspace
    from dialbgm.errors import DialbgmError, ResultsError
    from dialbgm.report import write_report_checked

    try:
        try:
            ws = find_workspace()
        except DialbgmError:
            ws = None  # prices then come from the installed checkout, if any
        try:
            html_path, md_path, warning = write_report_checked(folder, ws=ws, pair=pair, by_content=pair_by_content)
        except KeyError as e:
            raise ResultsError(f"--pair: {e.args[0]!r} is not a cell of {folder}") from None
    except DialbgmError as e:
        _fail(e)
        return
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {html_path}\nwrote {md_path}")


def diff_cmd(
    run_a: Annotated[Path, typer.Argument(help="The earlier run folder.")],
    run_b: Annotated[Path, typer.Argument(help="The later run folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole diff as JSON.")] = False,
    show: Annotated[int, typer.Option(help="Flipped items to list.", min=0)] = 20,
    pair_by_content: Annotated[
        bool,
        typer.Option(
            "--pair-by-content",
            help="Runs on different data files: compare only the items whose content is identical in both.",
        ),
    ] = False,
) -> None:
    """What changed between two runs: flipped top choices, metric movements, and whether they are significant."""
    from dialbgm.analysis import diff_runs
    from dialbgm.errors import DialbgmError

    try:
        d = diff_runs(run_a, run_b, by_content=pair_by_content)
    except DialbgmError as e:
        _fail(e)
        return
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    from rich.table import Table

    from dialbgm.metrics import METRICS
    from dialbgm.report import LABELS

    c = d["comparison"]
    console = _console()
    pairing = c["pairing"]
    if pairing["by"] != "same data file":
        console.print(
            f"different data files: paired on the {pairing['n_identical']} item(s) whose content is identical in "
            f"both; {pairing['n_same_id_different_content']} item(s) with the same id but other content left out"
        )
    console.print(
        f"A = {run_a}\nB = {run_b}\ncommon scored items: {c['n_common']} (lost by A: {c['lost_by_a']}, "
        f"lost by B: {c['lost_by_b']})\ntop choice flipped on {d['n_flipped']} of {c['n_common']} items"
    )
    if "n_groups" in c:
        console.print(f"items name groups: {c['n_groups']} groups, resampled and sign-flipped as units")
    for f in d["flips"][:show]:
        best = ",".join(f["human_best"])
        console.print(f"  {f['item_id']}: {','.join(f['top_a'])} → {','.join(f['top_b'])} (human best {best})")
    t = Table(title="B − A (paired, Holm over the 6 metrics)")
    for col in ("metric", "A", "B", "B − A", "95% CI", "p", "p Holm", ""):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for m in METRICS:
        x = c["metrics"][m]
        if x.get("diff") is None:
            continue
        t.add_row(
            LABELS[m],
            f"{x['mean_a']:.3f}",
            f"{x['mean_b']:.3f}",
            f"{x['diff']:+.3f}",
            f"[{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]",
            f"{x['p_value']:.4f}",
            f"{x['p_holm']:.4f}",
            "significant" if x["significant"] else "",
        )
    console.print(t)
    console.print(c["statement"])


def export_cmd(
    folder: Annotated[Path, typer.Argument(help="A run folder or an experiment folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    table: Annotated[str, typer.Option("--table", "-t", help="units (one row per call), items or metrics.")] = "units",
    out: Annotated[Path | None, typer.Option(help="The file to write (default: FOLDER/TABLE.FORMAT).")] = None,
) -> None:
    """Write a run's (or an experiment's) rows as one CSV or Parquet file; nested fields become JSON text."""
    from dialbgm.analysis import export, load_any
    from dialbgm.errors import DialbgmError

    try:
        path, n = export(load_any(folder), table, fmt, out)  # type: ignore[arg-type]  # checked inside
    except DialbgmError as e:
        _fail(e)
        return
    typer.echo(f"wrote {path} ({n} rows)")


def register(app: typer.Typer) -> None:
    """Add ``compare``, ``report``, ``diff`` and ``export`` to the ``dialbgm`` app."""
    app.command("compare")(compare_cmd)
    app.command("report")(report_cmd)
    app.command("diff")(diff_cmd)
    app.command("export")(export_cmd)
