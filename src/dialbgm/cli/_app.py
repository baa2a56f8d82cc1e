"""The ``dialbgm`` command. Heavy modules (litellm, numpy, jinja2) are imported inside the
commands that need them, so ``dialbgm --help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._agreement import register as register_agreement
from dialbgm.cli._annotate import annotate_app
from dialbgm.cli._batch import BatchOpt, DeadlineOpt, batch_app, parse_deadline
from dialbgm.cli._cache import cache_app
from dialbgm.cli._common import DataOpt, SetOpt

# eval_cmd keeps the private names it has always called these by.
from dialbgm.cli._common import fail as _fail
from dialbgm.cli._common import warn as _warn
from dialbgm.cli._common import workspace as _workspace
from dialbgm.cli._experiments import register as register_experiments
from dialbgm.cli._inspect import register as register_inspection
from dialbgm.cli._view import register as register_view

app = typer.Typer(
    name="dialbgm",
    help="Judge background music for everyday dialogues with LLMs, against human rankings (DialBGM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cache_app, name="cache")
app.add_typer(batch_app, name="batch")
app.add_typer(annotate_app, name="annotate")
register_experiments(app)


def _print_version(value: bool) -> None:
    if value:
        from dialbgm import __version__

        typer.echo(f"dialbgm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Judge background music for everyday dialogues with LLMs, against human rankings (DialBGM)."""


def _not_with_resume(given: dict[str, bool]) -> None:
    """--resume takes the judge, data, limit and folder recorded in the run: an option that it
    would not honour is refused, not silently dropped."""
    from dialbgm.errors import ConfigError

    ignored = [name for name, was_given in given.items() if was_given]
    if ignored:
        raise ConfigError(
            f"--resume finishes the run as it was started and does not take {', '.join(ignored)}; "
            "drop them (to change them, start a new run)"
        )


@app.command("eval")
def eval_cmd(
    judge: Annotated[
        str | None, typer.Option("--judge", "-j", help="Judge name (a file in judges/); default: local.")
    ] = None,
    data: DataOpt = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N items.", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="Write the run's files into this folder.")] = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Replace the files of a run already in --out.")] = False,
    resume: Annotated[
        Path | None, typer.Option(help="Finish an interrupted run (its folder): only the missing calls are made.")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="With --resume: call again the units that ended transport_error.")
    ] = False,
    retry_status: Annotated[
        str | None,
        typer.Option(
            "--retry-status",
            help="With --resume: ask again the units that ended with these statuses (comma-separated among "
            "transport_error, parse_error, truncated, refused; or all), each as a new attempt that keeps the "
            "first reply.",
        ),
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Calls in flight at once (overrides the provider).")] = None,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute (overrides the provider).")] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens per minute (overrides the provider).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print calls, cache hits and estimated cost (online, batch); call nothing."),
    ] = False,
    batch: BatchOpt = False,
    batch_deadline: DeadlineOpt = None,
) -> None:
    """Evaluate a judge on a data file and print its agreement with the human ranks."""
    from dialbgm.config import parse_overrides
    from dialbgm.errors import DialbgmError
    from dialbgm.report import print_run
    from dialbgm.run import RunOptions, RunSpec, evaluate, resume_run

    try:
        if resume is not None:
            _not_with_resume(
                {"--judge": judge is not None, "--data": data is not None, "--limit": limit is not None}
                | {"--out": out is not None, "--force": force}
            )
        judge = judge or "local"
        ws = _workspace()
        # A path on the command line is relative to the current folder (recorded absolute, so
        # that --resume from another folder opens the same file).
        data_path = data.absolute() if data else ws.sample_data
        overrides = parse_overrides(set_) if set_ else None
        if dry_run:
            from dialbgm.cli._experiments import print_eval_plan

            return print_eval_plan(ws, judge, data_path, limit, overrides)
        if not quiet and resume is None:
            from dialbgm.config import load_judge, load_provider

            j = load_judge(ws, judge, overrides)
            if j.input != "caption" and load_provider(ws, j.provider).capabilities.audio_formats:
                # The first time, clips are decoded and encoded before any call (~30 clips/s on 2 cores).
                typer.echo("preparing the candidates' audio (kept in the cache for the next run)...", err=True)
        with _progress(quiet) as progress:
            options = RunOptions(
                out_dir=out,
                force=force,
                use_cache=not no_cache,
                progress=progress,
                provider_overrides={"concurrency": concurrency, "rpm": rpm, "tpm": tpm},
                retry_failed=retry_failed,
                retry_statuses=[s.strip() for s in retry_status.split(",") if s.strip()] if retry_status else (),
                batch=True if batch else None,
                batch_deadline_s=parse_deadline(batch_deadline),
            )
            if resume is not None:
                result = resume_run(ws, resume, options, overrides=overrides)
            else:
                result = evaluate(ws, RunSpec(judge, data_path, limit, overrides or {}), options)
    except DialbgmError as e:
        _fail(e)
        return
    except OSError as e:  # a file or folder outside the run's own (the cache, the workspace)
        _fail(RuntimeError(f"{f'{e.filename}: ' if e.filename else ''}{e.strerror or e}"))
        return
    except KeyboardInterrupt:
        typer.secho(
            "\ninterrupted: every finished call is recorded; finish with  dialbgm eval --resume <run folder>",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(130) from None
    print_run(result.manifest, result.metrics, str(result.out_dir))
    _warn(result.manifest.get("warnings", []))
    m = result.metrics
    if m["n_total"] and not m["n_items"]:  # failures are data, but a run with no data is a failed run
        failed = ", ".join(f"{k}={v}" for k, v in m["failed_by_status"].items())
        typer.secho(
            f"error: no item could be scored ({failed}); the most frequent error: {result.top_error}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)


class _progress:
    """A rich progress bar on stderr; silent when quiet or not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet or not sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("judging", total=None, detail="")

        def update(p: Any) -> None:
            detail = (
                f"cached {p.cached} · resumed {p.resumed} · in flight {p.in_flight} · retrying {p.retrying} · "
                f"failed {p.failed} · {p.rate:.1f} calls/s"
            )
            if p.batches:
                detail = f"cached {p.cached} · failed {p.failed} · {p.batches}"
            self._bar.update(self._task, completed=p.done, total=p.total, detail=detail)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# After eval: --help lists the commands in the order they are added.
register_inspection(app)
register_view(app)
register_agreement(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
