"""The ``dialbgm`` command. Heavy modules (litellm, numpy, jinja2) are imported inside the
commands that need them, so ``dialbgm --help`` stays fast."""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._experiments import register as register_experiments

app = typer.Typer(
    name="dialbgm",
    help="Judge background music for everyday dialogues with LLMs, against human rankings (DialBGM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect or clear the response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
register_experiments(app)

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


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


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


def _fail(e: Exception) -> None:
    from dialbgm.errors import DialbgmError

    code = e.exit_code if isinstance(e, DialbgmError) else 1
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _workspace() -> Any:
    from dialbgm.config import find_workspace

    return find_workspace()


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


def _warn(messages: list[str]) -> None:
    for m in messages:
        typer.secho(f"warning: {m}", fg=typer.colors.YELLOW, err=True)


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
            self._bar.update(self._task, completed=p.done, total=p.total, detail=detail)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@app.command()
def render(
    item: Annotated[str, typer.Option("--item", "-i", help="Item id.")],
    judge: JudgeOpt = "local",
    data: DataOpt = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the requests as JSON.")] = False,
) -> None:
    """Print the exact messages a judge would send for one item, without calling anything."""
    from dialbgm.config import parse_overrides
    from dialbgm.errors import DialbgmError
    from dialbgm.run import render_item
    from dialbgm.storage import redact

    try:
        ws = _workspace()
        prep, idx = render_item(
            ws, judge, data.absolute() if data else ws.sample_data, item, parse_overrides(set_ or [])
        )
    except DialbgmError as e:
        _fail(e)
        return
    _warn(prep.warnings)
    reqs = [prep.request(i) for i in idx]
    if as_json:
        body = [
            {
                **redact(r.key_parts()),
                "messages": r.messages,
                "messages_sha256": r.messages_sha256(),
                "cache_key": r.cache_key(),
            }
            for r in reqs
        ]
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    for n, (i, r) in enumerate(zip(idx, reqs, strict=True), start=1):
        unit = prep.units[i]
        labels = unit.labels or tuple(chr(65 + k) for k in range(len(unit.shown)))
        shown = ", ".join(f"{lab}={c.id}" for lab, c in zip(labels, unit.shown, strict=True))
        typer.secho(
            f"=== request {n}/{len(reqs)}  unit {unit.unit_id}  order {unit.order_index}  sample {unit.sample}  "
            f"model {r.model}",
            bold=True,
        )
        typer.echo(f"shown: {shown}")
        if unit.shots:
            typer.echo(f"few-shot examples: {', '.join(unit.shot_ids)}")
        params = redact({k: v for k, v in r.params.items() if k != "response_format"})
        typer.echo(f"params: {json.dumps(params)}")
        if "response_format" in r.params:
            typer.echo(f"response_format: {json.dumps(r.params['response_format'])}")
        typer.echo(f"cache key: {r.cache_key()}")
        for m in r.messages:
            typer.secho(f"--- {m['role']}", fg=typer.colors.CYAN)
            typer.echo(_shown_content(m["content"]))


def _shown_content(content: str | list[dict[str, Any]]) -> str:
    """A message as text; audio parts as one line each (format, length, rate, bytes, hash)."""
    if isinstance(content, str):
        return content
    from dialbgm.judging import AUDIO_REF, describe_part

    return "\n".join(describe_part(p) if p.get("type") == AUDIO_REF else str(p.get("text", p)) for p in content)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="Data file to check.")],
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Do not open the audio clips it names.")] = False,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            "-j",
            help="Also check what this judge needs of every item (summaries, captions, audio paths, "
            "candidates for its orders and aggregation) and of its few-shot pool.",
        ),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Check a data file and the audio clips it names; list every problem with its file, line and
    field (exit 2 if any)."""
    from dialbgm.data import Dataset, load_dataset
    from dialbgm.errors import DataError, DialbgmError

    ds: Dataset | None = None
    try:
        ds = load_dataset(path)
        problems = _judge_fit(judge, set_, ds) if judge else []
        if not no_audio and any(c.audio for i in ds for c in i.candidates):
            from dialbgm.judging import check_clips

            problems += check_clips(ds)
        if problems:
            raise DataError(problems)
    except DataError as e:
        for p in e.problems:
            typer.echo(str(p), err=True)
        typer.secho(f"{len(e.problems)} problem(s) in {path}", fg=typer.colors.RED, err=True)
        if ds is not None:
            from dialbgm.judging import missing_clips_hint

            if hint := missing_clips_hint(ds):
                typer.echo(hint, err=True)
        raise typer.Exit(2) from None
    except DialbgmError as e:  # e.g. the audio extra is not installed, an unknown judge
        _fail(e)
        return
    n_cands = sum(len(i.candidates) for i in ds)
    with_summary = sum(1 for i in ds if i.summary)
    with_audio = sum(1 for i in ds for c in i.candidates if c.audio)
    typer.echo(
        f"{path}: ok — {len(ds)} items, {n_cands} candidates, {with_summary} with a summary, "
        f"{with_audio} candidates with audio{' (clips not opened)' if no_audio and with_audio else ''} "
        f"({ds.fmt}, sha256 {ds.sha256[:12]}){f'; fit for judge {judge!r}' if judge else ''}"
    )


def _judge_fit(judge: str, set_: list[str] | None, ds: Any) -> list[Any]:
    """The problems eval would find in ``ds`` (and the judge's few-shot pool) for this judge."""
    from dialbgm.config import few_shot_pool_path, load_judge, load_provider, parse_overrides
    from dialbgm.judging import judge_fit_problems, load_pool

    ws = _workspace()
    j = load_judge(ws, judge, parse_overrides(set_) if set_ else None)
    provider = load_provider(ws, j.provider)
    pool = load_pool(few_shot_pool_path(ws, j), ds) if j.few_shot > 0 else None
    problems: list[Any] = judge_fit_problems(j, provider, ds, pool)
    return problems


@app.command()
def judges(
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="table: fits the terminal; json: a list of objects, for scripts.")
    ] = OutputFormat.table,
) -> None:
    """List the judges (the workspace's and the built-in ones): provider, model, mode, input, whether
    their key is set, and where each comes from."""
    import shutil

    from dialbgm.cli._listing import as_json, as_text, judge_records
    from dialbgm.errors import DialbgmError

    try:
        ws = _workspace()
        records = judge_records(ws)
    except DialbgmError as e:
        _fail(e)
        return
    if fmt is OutputFormat.json:
        typer.echo(as_json(records))
    else:
        typer.echo(as_text(records, ws, shutil.get_terminal_size().columns))


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to make a workspace of (created if missing).")] = Path("."),
) -> None:
    """Write a starter workspace: a judge and a template copied to edit, an example experiment and
    a README. Refuses to write over any file."""
    from dialbgm.config import JUDGE, builtin_root, init_workspace
    from dialbgm.errors import DialbgmError

    try:
        written = init_workspace(directory, builtin_root())
    except DialbgmError as e:
        _fail(e)
        return
    for p in written:
        typer.echo(f"wrote {p}")
    typer.echo(f"workspace ready: cd {directory} && dialbgm judges  (then: dialbgm render --judge {JUDGE} --item s001)")


def _response_cache() -> Any:
    from dialbgm.calls import ResponseCache

    return ResponseCache(_workspace().cache_dir)


@cache_app.command("stats")
def cache_stats() -> None:
    """Entries and size of the cache."""
    from dialbgm.errors import DialbgmError

    try:
        with _response_cache() as c:
            s = c.stats()
    except DialbgmError as e:
        _fail(e)
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
            _fail(e)
        typer.echo(f"storage: {e}", err=True)
        raise typer.Exit(1) from None
    except DialbgmError as e:
        _fail(e)
        return
    if report.salvage is not None:
        s = report.salvage
        lost = f"{report.removed} lost" if s.expected is not None else "how many were lost is unknown"
        typer.echo(
            f"{c.directory}: the database was damaged; rebuilt it with the {s.kept} entries it still held "
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
            f"{c.directory}: {report.entries} entries, {len(report.problems)} problems, "
            f"removed {report.removed} entries that do not decode"
        )
        return
    typer.echo(f"{c.directory}: {report.entries} entries, {len(report.problems)} problems")
    if report.problems:
        if any(p.startswith("storage:") for p in report.problems):
            typer.echo(RECOVERY, err=True)
        else:
            typer.echo("  `dialbgm cache verify --fix` deletes the entries that do not decode", err=True)
        raise typer.Exit(1)


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")]


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
            prompt = (
                f"delete {len(old)} of {total} cached responses (stored more than {older_than} ago) in {c.directory}?"
            )
            if old and not yes and not typer.confirm(prompt):
                raise typer.Exit(1)
            removed = c.remove(old)
            left = c.stats().entries
    except DialbgmError as e:
        _fail(e)
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
                prompt = f"delete {c.stats().entries} cached responses in {c.directory}?"
            except CacheError as e:
                if not e.corrupt:
                    raise
                damaged = str(e).splitlines()[0]
                prompt = f"{damaged}\ndelete it and its files?"
            if not yes and not typer.confirm(prompt):
                raise typer.Exit(1)
            removed = c.clear()
    except DialbgmError as e:
        _fail(e)
        return
    if damaged is not None or not (c.directory / "cache.db").exists():  # cleared without being opened
        typer.echo(f"removed the damaged database and {removed} value files from {c.directory}")
    else:
        typer.echo(f"removed {removed} entries from {c.directory}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
