"""``report.html``: self-contained (inline CSS and SVG, no external asset).

Built from :func:`dialbgm.analysis.analyse_cells` of a run or experiment folder. Every piece of
text that comes from data (dialogues, captions, judge replies, cell ids) goes through
``html.escape``: a judge reply is untrusted text and must render as text, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.analysis import CellData, data_warning, pair_taus
from dialbgm.metrics import METRICS
from dialbgm.report._format import LABELS, MC, SIG, label_map, pairing_notes
from dialbgm.report._format import esc as _e
from dialbgm.report._format import num as _num
from dialbgm.report._format import pval as _p
from dialbgm.report._format import rates as _rates
from dialbgm.report._format import settings_text as _settings_text
from dialbgm.report._human import human_html
from dialbgm.report._provenance import git_label, report_provenance
from dialbgm.report._svg import heatmap_svg, interval_svg

N_DISAGREE = 5

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2330;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:1.8em;border-bottom:1px solid #dde;padding-bottom:4px}
.meta{color:#556;font-size:.9em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.86em}
th,td{border:1px solid #d5d9e2;padding:4px 7px;text-align:right;vertical-align:top}
th{background:#eef1f6}td.l,th.l{text-align:left}
tr.sig td{background:#fff6d6}
.ci{color:#667;font-size:.9em}
.plots{display:flex;flex-wrap:wrap;gap:8px}
.plots figure{margin:0}.plots figcaption{font-weight:600;font-size:.9em}
.item{border:1px solid #d5d9e2;border-radius:6px;padding:10px 14px;margin:12px 0;background:#fafbfd}
.turn{margin:2px 0}.spk{font-weight:600;margin-right:4px}
pre{white-space:pre-wrap;word-break:break-word;background:#f2f3f7;padding:6px 8px;border-radius:4px;
font-size:.82em;max-height:16em;overflow:auto}
.note{color:#556;font-size:.88em}
"""


# ---------------------------------------------------------------- disagreement items


def disagreements(
    a: CellData, b: CellData | None, n: int = N_DISAGREE, *, by_content: bool = False
) -> list[tuple[str, float]]:
    """The items on which two cells (or a cell and the human ranks) agree least, by per-item tau-b."""
    from dialbgm.analysis import only_keys, pairable, sign_vectors

    if b is None:
        taus = {i: float(r["metrics"]["kendall_tau_b"]) for i, r in a.ok_items.items()}
    else:
        allowed = pairable(a, b, by_content=by_content)
        taus = pair_taus(only_keys(sign_vectors(a), allowed), only_keys(sign_vectors(b), allowed))
    return sorted(taus.items(), key=lambda kv: (kv[1], kv[0]))[:n]


def _dataset_for(cell: CellData) -> Any:
    from dialbgm.data import load_dataset
    from dialbgm.errors import DialbgmError

    path = cell.manifest.get("dataset", {}).get("path")
    if not path:
        return None
    try:
        ds = load_dataset(Path(path))
    except (DialbgmError, OSError):
        return None
    # A file edited since the run would show other dialogues and captions beside its scores.
    return ds if ds.sha256 == cell.data_sha256 else None


def _replies(cell: CellData, item_id: str) -> list[dict[str, Any]]:
    return [u for u in cell.units if u["item_id"] == item_id]


def _provenance_html(prov: dict[str, Any]) -> str:
    out = [
        f'<p class="meta">report written {_e(prov["report_written"])} by dialbgm {_e(prov["report_dialbgm"])}; '
        "every row below is what that cell's run recorded when it ran.</p>",
        '<table class="provenance"><tr><th class="l">cell</th><th class="l">ran</th><th class="l">dialbgm</th>'
        '<th class="l">git</th><th class="l">packages</th><th class="l">judge settings</th>'
        '<th class="l">template sha256</th><th class="l">data sha256</th></tr>',
    ]
    for c in prov["cells"]:
        pkgs = ", ".join(f"{k} {v}" for k, v in c["packages"].items()) or "unknown"
        out.append(
            f'<tr><td class="l">{_e(c["cell_id"])}</td><td class="l">{_e(c["started"] or "unknown")}</td>'
            f'<td class="l">{_e(c["dialbgm"] or "unknown")}</td>'
            f'<td class="l">{_e(git_label(c["git_commit"], c["git_dirty"]))}</td><td class="l">{_e(pkgs)}</td>'
            f'<td class="l"><code>{_e(_settings_text(c["settings"]))}</code></td>'
            f'<td class="l"><code>{_e(c["template_sha256"] or "none")}</code></td>'
            f'<td class="l"><code>{_e(c["data_sha256"] or "unknown")}</code> ({_e(c["data_path"])})</td></tr>'
        )
    out.append("</table>")
    return "".join(out)


def _item_html(item_id: str, tau: float, a: CellData, b: CellData | None, dataset: Any) -> str:
    out = [f'<div class="item" id="item-{_e(item_id)}"><h3>{_e(item_id)} — τ-b = {_num(tau, 2)}</h3>']
    item = None
    if dataset is not None:
        try:
            item = dataset.get(item_id)
        except KeyError:
            item = None
    if item is None:
        out.append('<p class="note">dialogue not available (data file moved or changed)</p>')
    else:
        out.append('<div class="dialogue">')
        for t in item.dialogue:
            out.append(f'<div class="turn"><span class="spk">{_e(t.speaker)}:</span>{_e(t.text)}</div>')
        out.append("</div>")
    sa = a.items[item_id].get("scores") or {}
    sb = (b.items.get(item_id, {}).get("scores") or {}) if b is not None else {}
    human = a.items[item_id].get("human_ranks") or {}
    head_b = f"<th>{_e(b.cell_id)} score</th>" if b is not None else ""
    out.append(
        f'<table><tr><th class="l">clip</th><th class="l">caption</th><th>human rank</th>'
        f"<th>{_e(a.cell_id)} score</th>{head_b}</tr>"
    )
    captions = {c.id: c.caption for c in item.candidates} if item is not None else {}
    for cid in sorted(human, key=lambda c: human[c]):
        cell_b = f"<td>{_num(sb.get(cid))}</td>" if b is not None else ""
        out.append(
            f'<tr><td class="l">{_e(cid)}</td><td class="l">{_e(captions.get(cid) or "")}</td>'
            f"<td>{human[cid]}</td><td>{_num(sa.get(cid))}</td>{cell_b}</tr>"
        )
    out.append("</table>")
    for cell in (a, b):
        if cell is None:
            continue
        for u in _replies(cell, item_id):
            tag = f"order {u.get('order_index')}, sample {u.get('sample')}, {u.get('status')}"
            out.append(f'<div class="note">{_e(cell.cell_id)} raw reply ({_e(tag)}; {_e(label_map(u))}):</div>')
            out.append(f"<pre>{_e(u.get('raw') if u.get('raw') is not None else u.get('error'))}</pre>")
    out.append("</div>")
    return "".join(out)


# ---------------------------------------------------------------- HTML


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
    out.append(
        f'</table><p class="note">Tokens as reported by the provider (0 for offline judges); priced with '
        f"{_e(prices.get('file') or 'no price table')} v{_e(prices['version'])} ({_e(prices['date'])}). "
        "Check prices against the providers' pages before quoting a cost.</p>"
    )
    return "".join(out)


def _pick_pair(result: dict[str, Any], pair: tuple[str, str] | None) -> tuple[str, str | None]:
    ids = [r["cell_id"] for r in result["leaderboard"]]
    if pair is not None:
        for x in pair:
            if x not in ids:
                raise KeyError(x)
        return pair[0], pair[1]
    if result["comparisons"]:
        c = result["comparisons"][0]
        return c["a"], c["b"]
    return ids[0], None


def render_html(result: dict[str, Any], cells: list[CellData], pair: tuple[str, str] | None = None) -> str:
    spec = result["experiment"]
    title = f"Experiment {spec['name']}" if spec else f"Run {cells[0].cell_id}"
    baseline = spec.get("baseline") if spec else None
    data = spec["data"]["path"] if spec else cells[0].manifest["dataset"]["path"]
    by_id = {c.cell_id: c for c in cells}
    a_id, b_id = _pick_pair(result, pair)
    a, b = by_id[a_id], (by_id[b_id] if b_id else None)
    dataset = _dataset_for(a)
    ag = result["agreement"]
    warning = data_warning(result.get("data") or [])
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">data: {_e(data)} · cells: {len(cells)} · folder: {_e(result["folder"])}</p>',
        f'<p class="note"><strong>Note:</strong> {_e(warning)}.</p>' if warning else "",
        '<h2 id="leaderboard">Leaderboard</h2>',
        _leaderboard_html(result["leaderboard"], baseline),
        '<p class="note">Mean over scored items with a 95% percentile bootstrap interval; an item with any '
        "failed call is not scored and is counted as a failure.</p>",
        human_html(result.get("human")),
        '<h2 id="intervals">Intervals</h2><div class="plots">',
        *(
            f"<figure><figcaption>{_e(LABELS[m])}</figcaption>{interval_svg(m, result['leaderboard'])}</figure>"
            for m in METRICS
        ),
        '</div><p class="note">Dots: means; bars: 95% intervals; dashed line: chance.</p>',
        '<h2 id="paired">Paired comparisons</h2>',
        _comparisons_html(result["comparisons"], result["family"]),
        *(f'<p class="note">{_e(n)}</p>' for n in pairing_notes(result["comparisons"])),
        '<h2 id="agreement">Judge agreement</h2>',
        heatmap_svg(ag["cells"], ag["mean_kendall_tau_b"], ag["n_items"]),
        _agreement_table(ag),
        f'<p class="note">{_e(ag["note"])}</p>',
        '<h2 id="bias">Position and label bias</h2>',
        _bias_html(result.get("bias") or []),
        '<h2 id="cost">Cost</h2>',
        _cost_html(result["cost"], result["prices"]),
        f'<h2 id="items">Items where {_e(a_id)} and {_e(b_id or "the human ranks")} disagree most</h2>',
        *(
            _item_html(i, t, a, b, dataset)
            for i, t in disagreements(a, b, by_content=bool(result.get("pair_by_content")))
        ),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + '<h2 id="provenance">Provenance</h2>'
        + _provenance_html(result.get("provenance") or report_provenance([(c.cell_id, c.manifest) for c in cells]))
        + "</body></html>\n"
    )
