"""``report.md``: the comparison as Markdown tables, for a paper's supplement or a pull request."""

from __future__ import annotations

from typing import Any

from dialbgm.analysis import data_warning
from dialbgm.metrics import METRICS
from dialbgm.report._format import MC, MD_LABELS, pairing_notes
from dialbgm.report._format import md as _md
from dialbgm.report._format import num as _num
from dialbgm.report._format import pval as _p
from dialbgm.report._format import rates as _rates
from dialbgm.report._format import settings_text as _settings_text
from dialbgm.report._human import human_md
from dialbgm.report._provenance import git_label


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
    lines += human_md(result.get("human"))
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
