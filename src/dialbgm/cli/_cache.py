"""``dialbgm cache``: inspect, check, prune or clear the response cache."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._common import YesOpt, fail, workspace

cache_app = typer.Typer(
    help="Inspect, clear, export or import the response cache (a folder, or a shared Redis server).",
    no_args_is_help=True,
)
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The cache to use: redis://HOST:PORT/DB (a shared server), or 'folder' for the workspace's "
        "folder cache (default: DIALBGM_CACHE_URL, else [cache] url in dialbgm.toml, else the folder).",
    ),
]


def _response_cache(url: str | None = None) -> Any:
    from dialbgm.calls import ResponseCache

    ws = workspace()
    if url is None:
        return ResponseCache.for_workspace(ws)
    return ResponseCache(ws.cache_dir, None if url == "folder" else url)


@cache_app.command("stats")
def cache_stats(url: UrlOpt = None) -> None:
    """Entries and size of the cache."""
    from dialbgm.errors import DialbgmError

    try:
        with _response_cache(url) as c:
            s = c.stats()
    except DialbgmError as e:
        fail(e)
        return
    rate = "n/a" if s.hit_rate is None else f"{s.hit_rate:.1%}"
    typer.echo(
        f"{s.directory}: {s.entries} entries, {s.size_bytes / 1e6:.2f} MB{' (read-only)' if s.read_only else ''}; "
        f"lookups since creation: {s.hits} hits, {s.misses} misses (hit rate {rate})"
    )


@cache_app.command("verify")
def cache_verify(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Delete entries that do not decode; rebuild a damaged database from every entry it still "
            "yields (the damaged file is kept beside it as cache.db.corrupt-*).",
        ),
    ] = False,
) -> None:
    """Check the cache's storage and that every entry decodes (exit 1 if anything is wrong)."""
    from dialbgm.calls import RECOVERY, CacheError
    from dialbgm.errors import DialbgmError

    try:
        with _response_cache() as c:
            report = c.verify(fix=fix)
    except CacheError as e:
        if not e.corrupt:
            fail(e)
        typer.echo(f"storage: {e}", err=True)
        raise typer.Exit(1) from None
    except DialbgmError as e:
        fail(e)
        return
    if report.salvage is not None:
        s = report.salvage
        lost = f"{report.removed} lost" if s.expected is not None else "how many were lost is unknown"
        typer.echo(
            f"{c.where}: the database was damaged; rebuilt it with the {s.kept} entries it still held "
            f"({lost}){f', the damaged file is kept as {s.moved_to}' if s.moved_to else ''}"
        )
        for note in s.notes:
            typer.echo(f"note: {note}", err=True)
        return
    for p in report.problems[:50]:
        typer.echo(p, err=True)
    if len(report.problems) > 50:
        typer.echo(f"... and {len(report.problems) - 50} more", err=True)
    if fix:
        typer.echo(
            f"{c.where}: {report.entries} entries, {len(report.problems)} problems, "
            f"removed {report.removed} entries that do not decode"
        )
        return
    typer.echo(f"{c.where}: {report.entries} entries, {len(report.problems)} problems")
    if report.problems:
        if any(p.startswith("storage:") for p in report.problems):
            typer.echo(RECOVERY, err=True)
        else:
            typer.echo("  `dialbgm cache verify --fix` deletes the entries that do not decode", err=True)
        raise typer.Exit(1)


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age to delete from, e.g. 30d, 12h, 90m (paid answers are lost).")
    ],
    yes: YesOpt = False,
) -> None:
    """Delete entries stored longer ago than --older-than (asks first, like clear)."""
    from dialbgm.errors import DialbgmError

    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    value, unit = older_than[:-1], older_than[-1:]
    try:
        seconds = float(value) * units[unit]
        if not math.isfinite(seconds) or seconds < 0:  # "nand" or "1e999d" would prune nothing, silently
            raise ValueError
    except (KeyError, ValueError):
        typer.secho(f"error: --older-than {older_than!r}: use a number with d, h, m or s (e.g. 30d)", err=True)
        raise typer.Exit(2) from None
    try:
        with _response_cache() as c:
            old = c.older_than(seconds)
            total = c.stats().entries
            prompt = f"delete {len(old)} of {total} cached responses (stored more than {older_than} ago) in {c.where}?"
            if old and not yes and not typer.confirm(prompt):
                raise typer.Exit(1)
            removed = c.remove(old)
            left = c.stats().entries
    except DialbgmError as e:
        fail(e)
        return
    typer.echo(f"removed {removed} entries older than {older_than}; {left} left")


@cache_app.command("clear")
def cache_clear(yes: YesOpt = False) -> None:
    """Delete every cached response (paid answers are lost: re-running pays again); works on a damaged cache."""
    from dialbgm.calls import CacheError
    from dialbgm.errors import DialbgmError

    try:
        with _response_cache() as c:
            damaged: str | None = None
            try:
                prompt = f"delete {c.stats().entries} cached responses in {c.where}?"
            except CacheError as e:
                if not e.corrupt:
                    raise
                damaged = str(e).splitlines()[0]
                prompt = f"{damaged}\ndelete it and its files?"
            if not yes and not typer.confirm(prompt):
                raise typer.Exit(1)
            removed = c.clear()
    except DialbgmError as e:
        fail(e)
        return
    if damaged is not None or not (c.url or (c.directory / "cache.db").exists()):  # cleared without being opened
        typer.echo(f"removed the damaged database and {removed} value files from {c.directory}")
    else:
        typer.echo(f"removed {removed} entries from {c.where}")


@cache_app.command("export")
def cache_export(
    file: Annotated[Path, typer.Argument(help="The JSON Lines file to write (replaced whole, or not at all).")],
    url: UrlOpt = None,
) -> None:
    """Write every entry of the cache to FILE, each with its sha256 (for `cache import` elsewhere)."""
    from dialbgm.calls import export_entries
    from dialbgm.errors import ConfigError, DialbgmError

    try:
        if file.is_dir():
            raise ConfigError(f"{file} is a folder: name the file to write")
        file.parent.mkdir(parents=True, exist_ok=True)  # as agreement --out and annotate export do
        with _response_cache(url) as c:
            done = export_entries(c, file)
    except OSError as e:
        fail(ConfigError(f"cannot write {file}: {e.strerror or e}"))
        return
    except DialbgmError as e:
        fail(e)
        return
    for note in done.skipped[:20]:
        typer.echo(f"skipped (does not decode): {note}", err=True)
    typer.echo(
        f"exported {done.entries} entries from {c.where} to {file}"
        + (f"; {len(done.skipped)} that do not decode were left out" if done.skipped else "")
    )


@cache_app.command("import")
def cache_import(
    file: Annotated[Path, typer.Argument(help="A file written by `dialbgm cache export`.")],
    url: UrlOpt = None,
) -> None:
    """Store the entries of FILE that the cache lacks, after checking every hash (exit 1 if any is wrong)."""
    from dialbgm.calls import import_entries
    from dialbgm.errors import DialbgmError

    try:
        with _response_cache(url) as c:
            done = import_entries(c, file)
    except DialbgmError as e:
        fail(e)
        return
    typer.echo(
        f"imported {done.stored} of {done.entries} entries into {c.where} (verified by sha256); "
        f"{done.present} were there already"
        + (f"; {done.differ} keys hold other bytes there and were kept as they are" if done.differ else "")
    )
