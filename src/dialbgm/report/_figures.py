"""The experiment figures, each one function of :func:`dialbgm.analysis.analyse_cells`'s result.

``report.html`` and the web viewer's experiment page both call these (through
:func:`figure_sections`), so the two show the same figures from the same code. Each returns an
HTML fragment styled by :data:`REPORT_CSS`'s classes; every text from data or configs is escaped.
"""

from __future__ import annotations

from typing import Any

from dialbgm.metrics import METRICS
from dialbgm.report._format import LABELS, MC, SIG, cost_lines, pairing_notes
from dialbgm.report._format import esc as _e
from dialbgm.report._format import num as _num
from dialbgm.report._format import pval as _p
from dialbgm.report._format import rates as _rates
from dialbgm.report._human import human_html
from dialbgm.report._svg import heatmap_svg, interval_svg

FIGURES = ("leaderboard", "intervals", "paired", "agreement", "bias", "cost")
"""Each figure's anchor, in the order a page shows them."""

TITLES = {
    "leaderboard": "Leaderboard",
    "intervals": "Intervals",
    "paired": "Paired comparisons",
    "agreement": "Judge agreement",
    "bias": "Position and label bias",
    "cost": "Cost",
}


def leaderboard_figure(result: dict[str, Any]) -> str:
    spec = result["experiment"]
    return (
        _leaderboard_html(result["leaderboard"], spec.get("baseline") if spec else None)
        + (
            '<p class="note">Mean over scored items with a 95% percentile bootstrap interval; an item with any '
            "failed call is not scored and is counted as a failure.</p>"
        )
        + human_html(result.get("human"))
    )


def intervals_figure(result: dict[str, Any]) -> str:
    figs = "".join(
        f"<figure><figcaption>{_e(LABELS[m])}</figcaption>{interval_svg(m, result['leaderboard'])}</figure>"
        for m in METRICS
    )
    return f'<div class="plots">{figs}</div><p class="note">Dots: means; bars: 95% intervals; dashed line: chance.</p>'


def paired_figure(result: dict[str, Any]) -> str:
    return _comparisons_html(result["comparisons"], result["family"]) + "".join(
        f'<p class="note">{_e(n)}</p>' for n in pairing_notes(result["comparisons"])
    )


def agreement_figure(result: dict[str, Any]) -> str:
    ag = result["agreement"]
    return (
        heatmap_svg(ag["cells"], ag["mean_kendall_tau_b"], ag["n_items"])
        + _agreement_table(ag)
        + f'<p class="note">{_e(ag["note"])}</p>'
    )


def bias_figure(result: dict[str, Any]) -> str:
    return _bias_html(result.get("bias") or [])


def cost_figure(result: dict[str, Any]) -> str:
    return _cost_html(result["cost"], result["prices"])


_MAKERS = {
    "leaderboard": leaderboard_figure,
    "intervals": intervals_figure,
    "paired": paired_figure,
    "agreement": agreement_figure,
    "bias": bias_figure,
    "cost": cost_figure,
}


def figure_sections(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(anchor, title, html)`` for every figure, in :data:`FIGURES` order."""
    return [(k, TITLES[k], _MAKERS[k](result)) for k in FIGURES]


def _leaderboard_html(rows: list[dict[str, Any]], baseline: str | None) -> str:
    head = "".join(f"<th>{_e(LABELS[m])}</th>" for m in METRICS)
    out = [
        '<table class="leaderboard"><tr><th class="l">cell</th><th>scored</th><th>parse failures<br>'
        f"(items / units)</th><th>transport failures<br>(items / units)</th>{head}</tr>"
    ]
    for r in rows:
        mark = " (baseline)" if r["cell_id"] == baseline else ""
        cells = "".join(
            f'<td>{_num(r["metrics"][m]["mean"])}<br><span class="ci">[{_num(r["metrics"][m]["ci_low"])}, '
            f"{_num(r['metrics'][m]['ci_high'])}]</span></td>"
            for m in METRICS
        )
        out.append(
            f'<tr><td class="l">{_e(r["cell_id"])}{mark}</td><td>{r["n_items"]} / {r["n_total"]}</td>'
            f"<td>{r['items_failed_parse']} / {r['units_parse_failures']}</td>"
            f"<td>{r['items_failed_transport']} / {r['units_transport_failures']}</td>{cells}</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _comparisons_html(comps: list[dict[str, Any]], family: dict[str, Any]) -> str:
    if not comps:
        return "<p>No comparison (one cell).</p>"
    out = [
        f'<p class="note">{_e(family["test"])}; {_e(family["interval"])}; {_e(family["method"])} '
        f"({family['n_tests']} tests, α = {family['alpha']}). Highlighted rows: significant after Holm.</p>"
    ]
    for c in comps:
        out.append(
            f"<h3>{_e(c['b'])} − {_e(c['a'])}</h3><p>n common = {c['n_common']} "
            f"(lost by {_e(c['a'])}: {c['lost_by_a']}, lost by {_e(c['b'])}: {c['lost_by_b']})</p>"
        )
        out.append(
            '<table class="paired"><tr><th class="l">metric</th><th>A</th><th>B</th><th>B − A</th><th>95% CI</th>'
            "<th>p</th><th>p (Holm)</th><th>MDD 80%</th></tr>"
        )
        for m in METRICS:
            x = c["metrics"][m]
            if x.get("diff") is None:
                out.append(f'<tr><td class="l">{_e(LABELS[m])}</td><td colspan="7">no common items</td></tr>')
                continue
            sig = ' class="sig"' if x.get("significant") else ""
            out.append(
                f'<tr{sig}><td class="l">{_e(LABELS[m])}</td><td>{_num(x["mean_a"])}</td><td>{_num(x["mean_b"])}</td>'
                f"<td>{_num(x['diff'])}{SIG if x.get('significant') else ''}</td>"
                f"<td>[{_num(x['ci_low'])}, {_num(x['ci_high'])}]</td>"
                f"<td>{_p(x['p_value'])}{'' if x['exact'] else MC}</td><td>{_p(x.get('p_holm'))}</td>"
                f"<td>{_num(x['mdd80'])}</td></tr>"
            )
        mc = any(x.get("exact") is False for x in c["metrics"].values())
        notes = [f"{SIG} significant at α = {family['alpha']} after Holm."] + (
            [f"{MC} Monte Carlo p-value."] if mc else []
        )
        out.append(f'</table><p class="note">{_e(c["statement"])} {_e(" ".join(notes))}</p>')
    return "".join(out)


def _agreement_table(ag: dict[str, Any]) -> str:
    names = ag["cells"]
    out = ['<table class="agreement"><tr><th></th>', *(f"<th>{_e(n)}</th>" for n in names), "</tr>"]
    for i, n in enumerate(names):
        out.append(f'<tr><th class="l">{_e(n)}</th>')
        out.extend(
            f"<td>{_num(v, 2)} <span class='ci'>n={ag['n_items'][i][j]}</span></td>"
            for j, v in enumerate(ag["mean_kendall_tau_b"][i])
        )
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _bias_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No list judge in these runs.</p>'
    head = (
        "<tr><th>cell</th><th>judgements / item</th><th>top-1 by position</th><th>p</th><th>top-1 by label</th>"
        "<th>p</th><th>position consistency</th><th>flip rate</th><th>tie rate</th>"
        "<th>Hit@1 first judgement</th><th>Hit@1 aggregated</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r['cell_id'])}</td><td>{_e(r['judgements_per_item'])}</td>"
        f"<td>{_e(_rates(r['position_keys'], r['position_rates']))}</td><td>{_p(r['position_p'])}</td>"
        f"<td>{_e(_rates(r['label_keys'], r['label_rates']))}</td><td>{_p(r['label_p'])}</td>"
        f"<td>{_num(r['position_consistency'])}</td><td>{_num(r['flip_rate'])}</td><td>{_num(r['tie_rate'])}</td>"
        f"<td>{_num(r['hit_at_1_first_judgement'])}</td><td>{_num(r['hit_at_1_aggregated'])}</td></tr>"
        for r in rows
    )
    return (
        f'<table class="bias">{head}{body}</table><p class="note">Share of judgements whose top score went to '
        "each position / label (ties split), with a chi-square test against uniform; consistency: how often "
        "the top choice survives a change of order; flips: between samples of one order.</p>"
    )


def _cost_html(rows: list[dict[str, Any]], prices: dict[str, Any]) -> str:
    out = [
        '<table class="cost"><tr><th class="l">cell</th><th class="l">model</th><th>units</th><th>cache hits</th>'
        "<th>prompt tokens</th><th>completion tokens</th><th>cost (USD)</th><th>paid this run</th>"
        "<th>avoided by cache</th></tr>"
    ]
    for r in rows:
        out.append(
            f'<tr><td class="l">{_e(r["cell_id"])}</td><td class="l">{_e(r["model"])}</td><td>{r["units"]}</td>'
            f"<td>{r['cache_hits']}</td><td>{r['prompt_tokens']}</td><td>{r['completion_tokens']}</td>"
            + "".join(
                f"<td>{'unknown' if r[k] is None else f'{r[k]:.4f}'}</td>"
                for k in ("cost_usd", "cost_this_run_usd", "cost_avoided_usd")
            )
            + "</tr>"
        )
    out.append("</table>")
    out.extend(f'<p class="note">{_e(line)}</p>' for line in cost_lines(rows))
    out.append(
        f'<p class="note">Tokens as reported by the provider (0 for offline judges); priced with '
        f"{_e(prices.get('file') or 'no price table')} v{_e(prices['version'])} ({_e(prices['date'])}). "
        "Check prices against the providers' pages before quoting a cost.</p>"
    )
    return "".join(out)
