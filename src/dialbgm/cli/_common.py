"""What the commands share: their common options, and how a command fails, finds its workspace
and warns."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

JudgeOpt = Annotated[str, typer.Option("--judge", "-j", help="Judge name (a file in judges/).")]
DataOpt = Annotated[
    Path | None, typer.Option("--data", "-d", help="Data file (.jsonl, .csv, .parquet); default: the bundled sample.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a judge setting for this run: KEY=VALUE, the value in TOML syntax (repeatable); "
        "KEY is any key of a judge file, params.KEY or weights.KEY. The keys are documented in dialbgm's "
        "README, section Configuration (the table 'A judge').",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")]


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def fail(e: Exception) -> None:
    from dialbgm.errors import DialbgmError

    code = e.exit_code if isinstance(e, DialbgmError) else 1
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def workspace() -> Any:
    from dialbgm.config import find_workspace

    return find_workspace()


def warn(messages: list[str]) -> None:
    for m in messages:
        typer.secho(f"warning: {m}", fg=typer.colors.YELLOW, err=True)
