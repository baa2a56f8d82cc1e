"""``dialbgm batch status RUN``: a run's batches as its ``batches.json`` records them (each
poll rewrites it), readable from another shell while the run waits, with no key and no call."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dialbgm.cli._common import OutputFormat, fail

batch_app = typer.Typer(help="The batches a run sent through a provider's batch API (eval --batch).")

BatchOpt = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Send the calls that are not cached through the provider's batch API (half price, answers within "
        "24 h); the batches are recorded in the run's folder, so --resume finds them (see `dialbgm batch status`).",
    ),
]
DeadlineOpt = Annotated[
    str | None,
    typer.Option(
        "--batch-deadline",
        help="Cancel a batch still pending or running this long after submission (90s, 30m, 6h, 1d; default: "
        "the judge's batch_deadline_s, 24 h) and call its unanswered requests online.",
    ),
]
DEADLINE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_deadline(text: str | None) -> float | None:
    """``90s``, ``30m``, ``6h``, ``1d`` or a number of seconds."""
    from dialbgm.errors import ConfigError

    if text is None:
        return None
    t = text.strip().lower()
    scale = DEADLINE_UNITS.get(t[-1:])
    try:
        value = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"--batch-deadline: expected a duration such as 90s, 30m, 6h or 1d, got {text!r}")
    return value


def _age(t: float | None) -> str:
    if not t:
        return "-"
    s = max(0.0, time.time() - t)
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for b in state["batches"]:
        st = b.get("status") or {}
        out.append(
            {
                "batch": b["n"],
                "id": b.get("batch_id"),
                "phase": b["phase"],
                "state": st.get("state", "-"),
                "counts": st.get("counts") or {"total": len(b["lines"])},
                "submitted_at": b.get("submitted_at"),
                "deadline_at": b.get("deadline_at"),
                "polled_at": st.get("polled_at"),
                "cancel_requested_at": b.get("cancel_requested_at"),
                "online": b.get("online"),
                "error": st.get("error") or st.get("poll_error"),
            }
        )
    return out


@batch_app.command("status")
def status_cmd(
    run: Annotated[Path, typer.Argument(help="The run's folder (results/...).")],
    format_: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """Each batch of a run: its provider id, state, counts, age and deadline (as last polled)."""
    from dialbgm.calls import read_batches
    from dialbgm.errors import DialbgmError, ResultsError

    try:
        if not run.is_dir():
            raise ResultsError(f"{run}: no such run folder")
        state = read_batches(run)
        if state is None:
            if not (run / "plan.json").is_file():
                raise ResultsError(f"{run}: not a run folder (no plan.json)")
            raise ResultsError(f"{run}: no batches.json (the run sent no batch)")
    except DialbgmError as e:
        fail(e)
        return
    table = rows(state)
    if format_ == OutputFormat.json:
        typer.echo(json.dumps({"dialect": state["dialect"], "provider": state["provider"], "batches": table}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{run}: {state['dialect']} batches (provider {state['provider']})")
    for col in ("batch", "id", "state", "total", "succeeded", "failed", "pending", "age", "deadline in", "polled"):
        t.add_column(col, justify="right" if col not in ("id", "state") else "left")
    for r in table:
        c = r["counts"]
        state_text = r["state"] if r["phase"] != "collected" else f"{r['state']} (collected)"
        if r["phase"] == "submitting":
            state_text = "submitting"
        if r["cancel_requested_at"] and r["phase"] != "collected":
            state_text += " (cancel asked)"
        left = r["deadline_at"] - time.time() if r["deadline_at"] and r["phase"] == "submitted" else None
        t.add_row(
            str(r["batch"]),
            str(r["id"] or "-"),
            state_text,
            *(str(c.get(k, "-")) for k in ("total", "succeeded", "failed", "pending")),
            _age(r["submitted_at"]),
            "-" if left is None else (f"{left / 3600:.1f} h" if left > 0 else "passed"),
            f"{_age(r['polled_at'])} ago" if r["polled_at"] else "-",
        )
    import sys

    console = Console(width=None if sys.stdout.isatty() else 200)  # a pipe gets whole rows
    console.print(t)
    for r in table:
        if r["error"]:
            console.print(f"batch {r['batch']}: {r['error']}", markup=False)
        if r["online"]:
            console.print(f"batch {r['batch']}: {r['online']} request(s) it did not answer were called online")
