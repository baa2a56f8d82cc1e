"""The commands that look without judging: render an item's requests, validate a data file, list
the judges, start a workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._common import DataOpt, JudgeOpt, OutputFormat, SetOpt, fail, warn, workspace


def register(app: typer.Typer) -> None:
    """Add the commands to ``app``, in the order ``dialbgm --help`` lists them."""
    app.command()(render)
    app.command()(validate)
    app.command()(judges)
    app.command()(init)


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
        ws = workspace()
        prep, idx = render_item(
            ws, judge, data.absolute() if data else ws.sample_data, item, parse_overrides(set_ or [])
        )
    except DialbgmError as e:
        fail(e)
        return
    warn(prep.warnings)
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
        fail(e)
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

    ws = workspace()
    j = load_judge(ws, judge, parse_overrides(set_) if set_ else None)
    provider = load_provider(ws, j.provider)
    pool = load_pool(few_shot_pool_path(ws, j), ds) if j.few_shot > 0 else None
    problems: list[Any] = judge_fit_problems(j, provider, ds, pool)
    return problems


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
        ws = workspace()
        records = judge_records(ws)
    except DialbgmError as e:
        fail(e)
        return
    if fmt is OutputFormat.json:
        typer.echo(as_json(records))
    else:
        typer.echo(as_text(records, ws, shutil.get_terminal_size().columns))


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
        fail(e)
        return
    for p in written:
        typer.echo(f"wrote {p}")
    typer.echo(f"workspace ready: cd {directory} && dialbgm judges  (then: dialbgm render --judge {JUDGE} --item s001)")
