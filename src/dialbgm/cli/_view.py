"""``dialbgm view``: the local web app over a results folder, added to the main app by :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dialbgm.cli._common import fail, warn, workspace


def register(app: typer.Typer) -> None:
    app.command("view")(view)


def view(
    results_dir: Annotated[
        Path | None, typer.Argument(help="The folder of runs to show; default: the workspace's results/.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port to listen on; 0 (default): a free one.", min=0, max=65535)] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback needs --allow-remote.")] = (
        "127.0.0.1"
    ),
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a --host other than loopback (anyone reaching it reads every run)."),
    ] = False,
) -> None:
    """Browse runs in a local web app: metrics, items, every judgement, and the clips to listen to."""
    from urllib.parse import quote

    from dialbgm.errors import DialbgmError, ResultsError
    from dialbgm.web import ViewSettings, check_host, create_app, need_web, serve

    try:
        need_web()
        warning = check_host(host, allow_remote)
        folder = (results_dir or workspace().results_dir).absolute()
        if results_dir is not None and not folder.is_dir():
            raise ResultsError(f"{folder}: not a folder")
        start = ""
        if (folder / "manifest.json").is_file():  # one run folder given: show its results folder, open at it
            folder, start = folder.parent, f"run/{quote(folder.name)}"
        hosts = ("*",) if warning else (*ViewSettings.allowed_hosts, host)
        app = create_app(ViewSettings(results_dir=folder, allowed_hosts=hosts))
    except DialbgmError as e:
        fail(e)
        return
    if warning:
        warn([warning])

    def ready(url: str) -> None:
        typer.echo(f"dialbgm view: {folder}")
        typer.echo(f"open {url}{start}  (Ctrl-C stops)")

    try:
        serve(app, host, port, on_ready=ready)
    except DialbgmError as e:
        fail(e)
    typer.echo("dialbgm view: stopped")
