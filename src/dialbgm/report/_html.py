"""``report.html`` (self-contained: inline CSS and SVG, no external asset) and ``report.md``.

Both are built from :func:`dialbgm.analysis._compare.analyse` of a run or experiment folder. Every piece of
text that comes from data (dialogues, captions, judge replies, cell ids) goes through
``html.escape``: a judge reply is untrusted text and must render as text, never as markup.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from dialbgm.analysis import CellData, data_warning, load_folder, pair_taus
from dialbgm.metrics import METRICS
from dialbgm.report._provenance import git_label, report_provenance

LABELS = {
    "hit_at_1": "Hit@1",
    "hit_at_2": "Hit@2",
    "mrr": "MRR",
    "ndcg": "NDCG",
    "kendall_tau_b": "Kendall τ-b",
    "spearman": "Spearman",
}
MD_LABELS = {**LABELS, "kendall_tau_b": "Kendall tau-b"}
DOMAIN = {"kendall_tau_b": (-1.0, 1.0), "spearman": (-1.0, 1.0)}
N_DISAGREE = 5
SIG = "*"
"""The one meaning of ``*`` in every output (terminal, HTML, Markdown): significant after Holm."""
MC = "†"
"""A p-value from random sign flips (Monte Carlo) rather than their exact enumeration."""

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


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return f"{x:.{digits}f}"


def _p(p: Any) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ---------------------------------------------------------------- SVG


def _color(v: float | None) -> str:
    """Diverging: -1 red, 0 white, +1 blue; grey when undefined."""
    if v is None or math.isnan(v):
        return "#cccccc"
    t = max(-1.0, min(1.0, v))
    lo, hi = (178, 24, 43), (33, 102, 172)
    end = hi if t >= 0 else lo
    a = abs(t)
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_svg(names: list[str], matrix: list[list[float | None]], counts: list[list[int]]) -> str:
    k = len(names)
    cell = 56 if k <= 10 else 36
    longest = max((len(n) for n in names), default=4)
    left = min(320, 12 + 6.6 * longest)
    top = min(260, 12 + 4.8 * longest)
    w, h = left + cell * k + 10, top + cell * k + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="judge agreement heatmap">'
    ]
    for i, name in enumerate(names):
        y = top + cell * i + cell / 2
        parts.append(
            f'<text x="{left - 6:.0f}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="11">{_e(name)}</text>'
        )
        x = left + cell * i + cell / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top - 6:.0f}" font-size="11" transform="rotate(-40 {x:.1f} {top - 6:.0f})">'
            f"{_e(name)}</text>"
        )
    for i in range(k):
        for j in range(k):
            v = matrix[i][j]
            x, y = left + cell * j, top + cell * i
            dark = v is not None and not math.isnan(v) and abs(v) > 0.6
            parts.append(
                f'<rect class="hm-cell" x="{x:.0f}" y="{y:.0f}" width="{cell}" height="{cell}" fill="{_color(v)}" '
                f'stroke="#fff"><title>{_e(names[i])} vs {_e(names[j])}: {_num(v)} (n={counts[i][j]})</title></rect>'
            )
            parts.append(
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2:.1f}" text-anchor="middle" dominant-baseline="middle" '
                f'font-size="{11 if cell > 40 else 9}" fill="{"#fff" if dark else "#222"}">{_num(v, 2)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def interval_svg(metric: str, rows: list[dict[str, Any]]) -> str:
    lo, hi = DOMAIN.get(metric, (0.0, 1.0))
    longest = max((len(r["cell_id"]) for r in rows), default=4)
    left, right, row_h, top = min(320, 14 + 7.0 * longest), 20, 22, 10
    width = 330 + left
    plot_w = width - left - right
    height = top + row_h * len(rows) + 28

    def sx(v: float) -> float:
        # 6 px of padding each side, so a dot at the domain's edge is drawn whole.
        return left + 6 + (max(lo, min(hi, v)) - lo) / (hi - lo) * (plot_w - 12)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="intervals" width="{width:.0f}" height="{height}" '
        f'viewBox="0 0 {width:.0f} {height}" role="img" aria-label="{_e(LABELS[metric])} with 95% intervals">'
    ]
    base = top + row_h * len(rows)
    for t in (lo, (lo + hi) / 2, hi):
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{base}" stroke="#e3e6ee"/>')
        parts.append(f'<text x="{sx(t):.1f}" y="{base + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
    chance = rows[0].get("chance", {}).get(metric) if rows else None
    if chance is not None:
        parts.append(
            f'<line x1="{sx(chance):.1f}" x2="{sx(chance):.1f}" y1="{top}" y2="{base}" stroke="#999" '
            f'stroke-dasharray="4 3"><title>chance {chance:.3f}</title></line>'
        )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        parts.append(
            f'<text x="{left - 6:.0f}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" font-size="11">'
            f"{_e(r['cell_id'])}</text>"
        )
        m = r["metrics"][metric]
        if m["mean"] is None:
            continue
        if m["ci_low"] is not None and m["ci_high"] is not None:
            parts.append(
                f'<line x1="{sx(m["ci_low"]):.1f}" x2="{sx(m["ci_high"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#2166ac" stroke-width="2"/>'
            )
        parts.append(
            f'<circle cx="{sx(m["mean"]):.1f}" cy="{y:.1f}" r="4" fill="#2166ac"><title>{_e(r["cell_id"])}: '
            f"{_num(m['mean'])} [{_num(m['ci_low'])}, {_num(m['ci_high'])}]</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


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


def label_map(unit: dict[str, Any]) -> str:
    """How the labels of this reply map to clips in the order it was shown: ``A→clip-3, B→clip-1``."""
    shown = unit.get("shown") or []
    if not shown:
        return "labels: none recorded"
    return "labels: " + ", ".join(f"{s['label']}→{s['candidate']}" for s in shown)


def _settings_text(settings: dict[str, Any]) -> str:
    import json

    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, sort_keys=True)}" for k, v in settings.items())


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


def _provenance_md(prov: dict[str, Any]) -> list[str]:
    lines = [
        "## Provenance",
        "",
        f"Report written {prov['report_written']} by dialbgm {prov['report_dialbgm']}; each row is what that "
        "cell's run recorded when it ran.",
        "",
        "| cell | ran | dialbgm | git | packages | judge settings | template sha256 | data sha256 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in prov["cells"]:
        pkgs = ", ".join(f"{k} {v}" for k, v in c["packages"].items()) or "unknown"
        lines.append(
            f"| {_md(c['cell_id'])} | {c['started'] or 'unknown'} | {c['dialbgm'] or 'unknown'} | "
            f"{git_label(c['git_commit'], c['git_dirty'])} | {_md(pkgs)} | `{_md(_settings_text(c['settings']))}` | "
            f"`{c['template_sha256'] or 'none'}` | `{c['data_sha256'] or 'unknown'}` ({_md(c['data_path'])}) |"
        )
    return lines


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


def pairing_notes(comparisons: list[dict[str, Any]]) -> list[str]:
    """One sentence per comparison of cells that read different data files (``--pair-by-content``)."""
    out = []
    for c in comparisons:
        p = c.get("pairing") or {}
        if p.get("by") == "identical item content":
            out.append(
                f"{c['a']} and {c['b']} read different data files: compared on the {p['n_identical']} item(s) whose "
                f"content is identical in both; {p['n_same_id_different_content']} item(s) with the same id but "
                "other content left out."
            )
    return out


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


def _rates(keys: list[str], rates: list[float]) -> str:
    return " ".join(f"{k}:{r:.2f}" for k, r in zip(keys, rates, strict=True))


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


# ---------------------------------------------------------------- Markdown


def _md(x: Any) -> str:
    return str(x).replace("|", "\\|")


def render_md(result: dict[str, Any]) -> str:
    spec = result["experiment"]
    lines = [f"# {'Experiment ' + spec['name'] if spec else 'Run ' + result['leaderboard'][0]['cell_id']}", ""]
    if spec:
        lines += [f"Data: `{spec['data']['path']}`; {len(spec['cells'])} cells.", ""]
    warning = data_warning(result.get("data") or [])
    if warning:
        lines += [f"**Note:** {_md(warning)}.", ""]
    lines += [
        "## Leaderboard",
        "",
        "Mean over scored items [95% percentile bootstrap interval]. Failures: items (units).",
        "",
        "| cell | scored | parse fail. | transport fail. | " + " | ".join(MD_LABELS[m] for m in METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for r in result["leaderboard"]:
        vals = " | ".join(
            f"{_num(r['metrics'][m]['mean'])} [{_num(r['metrics'][m]['ci_low'])}, {_num(r['metrics'][m]['ci_high'])}]"
            for m in METRICS
        )
        lines.append(
            f"| {_md(r['cell_id'])} | {r['n_items']}/{r['n_total']} | {r['items_failed_parse']} "
            f"({r['units_parse_failures']}) | {r['items_failed_transport']} ({r['units_transport_failures']}) | "
            f"{vals} |"
        )
    if result["comparisons"]:
        fam = result["family"]
        lines += [
            "",
            "## Paired comparisons (B − A)",
            "",
            f"{fam['test']}; {fam['interval']}; {fam['method']} ({fam['n_tests']} tests, alpha {fam['alpha']}). "
            "Only items scored by both cells enter a comparison.",
            *(f"\n{_md(n)}" for n in pairing_notes(result["comparisons"])),
            "",
            "| A | B | n common | lost A/B | metric | B − A [95% CI] | p | p Holm | MDD80 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in result["comparisons"]:
            for m in METRICS:
                x = c["metrics"][m]
                if x.get("diff") is None:
                    continue
                star = " **\\***" if x.get("significant") else ""
                mc = "" if x.get("exact", True) else f" {MC}"
                lines.append(
                    f"| {_md(c['a'])} | {_md(c['b'])} | {c['n_common']} | {c['lost_by_a']}/{c['lost_by_b']} | "
                    f"{MD_LABELS[m]} | {_num(x['diff'])} [{_num(x['ci_low'])}, {_num(x['ci_high'])}]{star} | "
                    f"{_p(x['p_value'])}{mc} | {_p(x.get('p_holm'))} | {_num(x['mdd80'])} |"
                )
        lines += ["", f"\\* significant at alpha {fam['alpha']} after Holm. {MC} Monte Carlo p-value.", ""]
        lines += [f"- {c['b']} − {c['a']}: {c['statement']}" for c in result["comparisons"]]
    ag = result["agreement"]
    lines += [
        "",
        "## Judge agreement (mean per-item Kendall tau-b)",
        "",
        "| | " + " | ".join(_md(n) for n in ag["cells"]) + " |",
        "|---|" + "---|" * len(ag["cells"]),
    ]
    for n, row in zip(ag["cells"], ag["mean_kendall_tau_b"], strict=True):
        lines.append(f"| {_md(n)} | " + " | ".join(_num(v, 2) for v in row) + " |")
    bias_rows = result.get("bias") or []
    if bias_rows:
        lines += [
            "",
            "## Position and label bias",
            "",
            "| cell | judgements/item | top-1 by position (p) | top-1 by label (p) | consistency | flips | ties "
            "| Hit@1 first | Hit@1 aggregated |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in bias_rows:
            lines.append(
                f"| {_md(r['cell_id'])} | {r['judgements_per_item']} | "
                f"{_rates(r['position_keys'], r['position_rates'])} ({_p(r['position_p'])}) | "
                f"{_rates(r['label_keys'], r['label_rates'])} ({_p(r['label_p'])}) | "
                f"{_num(r['position_consistency'])} | {_num(r['flip_rate'])} | {_num(r['tie_rate'])} | "
                f"{_num(r['hit_at_1_first_judgement'])} | {_num(r['hit_at_1_aggregated'])} |"
            )
    lines += [
        "",
        "## Cost",
        "",
        "| cell | model | prompt tokens | completion tokens | cost USD | avoided by cache USD |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["cost"]:
        cost = "unknown" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
        avoided = "unknown" if r["cost_avoided_usd"] is None else f"{r['cost_avoided_usd']:.4f}"
        lines.append(
            f"| {_md(r['cell_id'])} | {_md(r['model'])} | {r['prompt_tokens']} | {r['completion_tokens']} | "
            f"{cost} | {avoided} |"
        )
    p = result["prices"]
    lines += ["", f"Prices: table v{p['version']} ({p['date']}); check against the providers' pages.", ""]
    if result.get("provenance"):
        lines += [*_provenance_md(result["provenance"]), ""]
    return "\n".join(lines)


def write_report(
    path: Path,
    *,
    ws: Any = None,
    pair: tuple[str, str] | None = None,
    n_flips: int = 10_000,
    by_content: bool = False,
) -> tuple[Path, Path]:
    html_path, md_path, _ = write_report_checked(path, ws=ws, pair=pair, n_flips=n_flips, by_content=by_content)
    return html_path, md_path


def write_report_checked(
    path: Path,
    *,
    ws: Any = None,
    pair: tuple[str, str] | None = None,
    n_flips: int = 10_000,
    by_content: bool = False,
) -> tuple[Path, Path, str | None]:
    """:func:`write_report`, plus the warning the report carries when a data file is gone or
    changed since the run (None when every data file is the one the run read)."""
    from dialbgm.analysis import analyse_cells

    spec, cells = load_folder(path)
    result = analyse_cells(path, spec, cells, ws=ws, n_flips=n_flips, by_content=by_content)
    # One stamp for both files, so the HTML and the Markdown say the same thing.
    result = {**result, "provenance": report_provenance([(c.cell_id, c.manifest) for c in cells])}
    html_path, md_path = path / "report.html", path / "report.md"
    _write_text(html_path, render_html(result, cells, pair))
    _write_text(md_path, render_md(result))
    return html_path, md_path, data_warning(result["data"])


def _write_text(path: Path, text: str) -> None:
    # Written beside and renamed into place, so a reader never sees half a report; a folder that
    # cannot be written is the user's error (exit 2), not a traceback.
    from dialbgm.storage import atomic_file, writing

    with writing(path), atomic_file(path) as f:
        f.write(text)
