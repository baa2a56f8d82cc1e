"""The human ceiling in the reports: its row beside the judges, and each cell against it (the
fraction of the ceiling it reaches and the paired test of the difference), in HTML, Markdown
and the terminal. Drawn from comparison.json's ``human`` block (only data with annotations has one)."""

from __future__ import annotations

from typing import Any

from dialbgm.metrics import METRICS
from dialbgm.report._format import LABELS, MC, MD_LABELS, SIG
from dialbgm.report._format import esc as _e
from dialbgm.report._format import md as _md
from dialbgm.report._format import num as _num
from dialbgm.report._format import pval as _p

EXPLAIN = (
    "Human ceiling: each annotator's ranks scored as a judge's against the consensus of the item's other "
    "annotators (leave one annotator out), averaged over the item's annotators, then over items. "
    "Of ceiling = the cell's mean / the ceiling's mean on the items both have (chance is not subtracted); "
    "Δ = cell − ceiling on those items, with its paired sign-flip test, Holm-adjusted over these tests "
    f"alone; {SIG} = significant at 0.05 after that adjustment; {MC} = a Monte Carlo (random sign-flip) p-value."
)


def fraction(x: float | None) -> str:
    """A share of the human ceiling as every view writes it (``87%``; ``–`` when there is none)."""
    return "–" if x is None else f"{x:.0%}"


def _delta(x: dict[str, Any]) -> str:
    if x.get("diff") is None:
        return "–"
    return f"{x['diff']:+.3f}{SIG if x.get('significant') else ''}{'' if x.get('exact') else MC}"


def human_html(human: dict[str, Any] | None) -> str:
    if not human:
        return ""
    row = human["row"]
    head = "".join(f"<th>{_e(LABELS[m])}</th>" for m in METRICS)
    ceiling = "".join(
        f'<td>{_num(row["metrics"][m]["mean"])}<br><span class="ci">[{_num(row["metrics"][m]["ci_low"])}, '
        f"{_num(row['metrics'][m]['ci_high'])}]</span></td>"
        for m in METRICS
    )
    out = [
        '<h2 id="human">Human ceiling</h2>',
        f'<table class="human"><tr><th class="l">row</th><th>items</th>{head}</tr>',
        f'<tr><td class="l"><strong>human (ceiling)</strong></td><td>{row["n_items"]}</td>{ceiling}</tr>',
    ]
    for c in human["comparisons"]:
        cells = "".join(
            f"<td>{fraction(c['fraction_of_ceiling'][m])}<br>"
            f'<span class="ci">Δ {_e(_delta(c["metrics"][m]))} p {_p(c["metrics"][m].get("p_holm"))}</span></td>'
            for m in METRICS
        )
        out.append(f'<tr><td class="l">{_e(c["b"])} (of ceiling)</td><td>{c["n_common"]}</td>{cells}</tr>')
    out.append(f'</table><p class="note">{_e(EXPLAIN)}</p>')
    return "".join(out)


def _md_estimate(e: dict[str, Any]) -> str:
    return f"{_num(e['mean'])} [{_num(e['ci_low'])}, {_num(e['ci_high'])}]"


def human_md(human: dict[str, Any] | None) -> list[str]:
    if not human:
        return []
    row = human["row"]
    lines = [
        "",
        "## Human ceiling",
        "",
        _md(EXPLAIN),
        "",
        "| row | items | " + " | ".join(MD_LABELS[m] for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
        f"| **human (ceiling)** | {row['n_items']} | "
        + " | ".join(_md_estimate(row["metrics"][m]) for m in METRICS)
        + " |",
    ]
    for c in human["comparisons"]:
        lines.append(
            f"| {_md(c['b'])} (of ceiling) | {c['n_common']} | "
            + " | ".join(
                f"{fraction(c['fraction_of_ceiling'][m])} (Δ {_delta(c['metrics'][m])}, "
                f"p {_p(c['metrics'][m].get('p_holm'))})"
                for m in METRICS
            )
            + " |"
        )
    return lines


def print_human(console: Any, human: dict[str, Any] | None) -> None:
    """The terminal's table: the ceiling's row, then each cell's fraction of it and Δ."""
    if not human:
        return
    from rich.table import Table

    t = Table(title="human ceiling, and each cell as a fraction of it (Δ = cell − ceiling, Holm)")
    t.add_column("row", no_wrap=True)
    t.add_column("items", justify="right")
    for m in METRICS:
        t.add_column(LABELS[m], justify="right")
    row = human["row"]
    t.add_row(
        "human (ceiling)",
        str(row["n_items"]),
        *(
            f"{row['metrics'][m]['mean']:.3f} [{row['metrics'][m]['ci_low']:.2f}, {row['metrics'][m]['ci_high']:.2f}]"
            for m in METRICS
        ),
        style="bold",
    )
    for c in human["comparisons"]:
        t.add_row(
            c["b"],
            str(c["n_common"]),
            *(f"{fraction(c['fraction_of_ceiling'][m])} {_delta(c['metrics'][m])}" for m in METRICS),
        )
    console.print(t)
    console.print(f"{SIG} Δ significant at 0.05 after Holm's adjustment over the tests against the ceiling.")
