"""``dialbgm annotate``: serve a campaign's annotation pages, show its progress, export its rankings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dialbgm.cli._common import OutputFormat, fail, workspace
from dialbgm.errors import DialbgmError

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Where the submissions are stored: a PostgreSQL URL (postgresql://...) for a campaign served by "
        "several processes; default: annotations/NAME.sqlite in the workspace.",
    ),
]


class _ServeByDefault(TyperGroup):
    """``dialbgm annotate DATA --campaign NAME`` serves; ``annotate status|export NAME`` are subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(
    cls=_ServeByDefault,
    no_args_is_help=True,
    help="Collect human rankings in the browser: `dialbgm annotate DATA --campaign NAME` serves the pages; "
    "`annotate status NAME`, `annotate export NAME`.",
)


@annotate_app.command("serve")
def serve_cmd(
    campaign: Annotated[str, typer.Option("--campaign", "-c", help="campaigns/NAME.toml, or a path.")],
    data: Annotated[
        Path | None, typer.Argument(help="The data file to annotate (or `data` in the campaign file).")
    ] = None,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).", min=0, max=65535)] = 8765,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a --host that is not loopback (annotators elsewhere).")
    ] = False,
) -> None:
    """Serve the annotation pages of a campaign; prints each new annotator's link once."""
    from dialbgm.web import open_campaign, serve_campaign

    try:
        state = open_campaign(campaign, workspace(), db, data)
        serve_campaign(state, host, port, typer.echo, allow_remote)
    except DialbgmError as e:
        fail(e)


@annotate_app.command("status")
def status_cmd(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    db: DbOpt = None,
    format_: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Progress per annotator, gold items failed, and who is flagged."""
    from dialbgm.web import annotation_status, open_campaign

    try:
        state = open_campaign(name, workspace(), db)
        rows = annotation_status(state)
    except DialbgmError as e:
        fail(e)
    c = state.campaign
    if format_ is OutputFormat.json:
        out: dict[str, Any] = {
            "campaign": c.name,
            "data": str(state.data.path),
            "gold_failure_threshold": c.gold.failure_threshold if c.gold else None,
            "annotators": [r.__dict__ for r in rows],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"campaign {c.name} ({len(state.data)} items, {state.store.describe()})")
    for col in ("annotator", "submitted", "gold failed", "time", "flagged"):
        table.add_column(col, justify="left" if col == "annotator" else "right")
    for r in rows:
        gold = f"{r.gold_failed} of {r.gold_done}" if c.gold else "-"
        table.add_row(
            r.name, f"{r.done} / {r.total}", gold, f"{r.seconds / 60:.1f} min", "FLAGGED" if r.flagged else ""
        )
    Console().print(table)
    if c.gold:
        typer.echo(f"flagged: more than {c.gold.failure_threshold:.0%} of the gold items served failed")


@annotate_app.command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    db: DbOpt = None,
    out: Annotated[Path | None, typer.Option(help="The data file to write; default: annotations/NAME.jsonl.")] = None,
    consensus: Annotated[
        str | None, typer.Option(help="mean or kemeny; default: the campaign's `consensus` (mean).")
    ] = None,
) -> None:
    """Write the rankings as a data file: each annotator's ranks, and the consensus rule, per item."""
    from dialbgm.errors import ConfigError
    from dialbgm.metrics import CONSENSUS_RULES
    from dialbgm.web import default_export, export_campaign, open_campaign

    try:
        if consensus is not None and consensus not in CONSENSUS_RULES:
            raise ConfigError(f"--consensus: one of {', '.join(CONSENSUS_RULES)}, got {consensus!r}")
        ws = workspace()
        state = open_campaign(name, ws, db)
        target = out or default_export(ws, state.campaign.name)
        written, left_out = export_campaign(state, target, consensus)
    except OSError as e:
        fail(ConfigError(f"cannot write {out or 'the export'}: {e.strerror or e}"))
    except DialbgmError as e:
        fail(e)
    rule = consensus or state.campaign.consensus
    typer.echo(f"wrote {target}: {written} items, consensus: {rule} ({left_out} items not ranked yet, left out)")


@annotate_app.command("link")
def link_cmd(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    annotator: Annotated[str, typer.Argument(help="The annotator whose link was lost.")],
    db: DbOpt = None,
    base: Annotated[str, typer.Option(help="The server's address, to print a whole link.")] = "http://127.0.0.1:8765",
) -> None:
    """Make a new link for an annotator (the old one stops working; their submissions stay theirs)."""
    from dialbgm.errors import ConfigError
    from dialbgm.web import open_campaign

    try:
        state = open_campaign(name, workspace(), db)
        if annotator not in state.campaign.annotators:
            raise ConfigError(
                f"{annotator!r} is not an annotator of campaign {name!r}: {', '.join(state.campaign.annotators)}"
            )
        token = state.store.replace_token(state.campaign.name, annotator)
    except DialbgmError as e:
        fail(e)
    typer.echo(f"{annotator}: {base.rstrip('/')}/a/{token}")
