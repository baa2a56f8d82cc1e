"""Terminal, HTML and Markdown views of runs and experiments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "FIGURES",
    "FIGURE_CSS",
    "LABELS",
    "REPORT_CSS",
    "agreement_figure",
    "bias_figure",
    "cost_figure",
    "figure_sections",
    "fraction",
    "intervals_figure",
    "leaderboard_figure",
    "num",
    "paired_figure",
    "print_human",
    "print_run",
    "pval",
    "write_report_checked",
]

_WHERE = {
    "FIGURES": "._figures",
    "FIGURE_CSS": "._html",
    "LABELS": "._format",
    "REPORT_CSS": "._html",
    "agreement_figure": "._figures",
    "bias_figure": "._figures",
    "cost_figure": "._figures",
    "figure_sections": "._figures",
    "fraction": "._human",
    "intervals_figure": "._figures",
    "leaderboard_figure": "._figures",
    "num": "._format",
    "paired_figure": "._figures",
    "print_human": "._human",
    "print_run": "._terminal",
    "pval": "._format",
    "write_report_checked": "._write",
}

if TYPE_CHECKING:
    from dialbgm.report._figures import (
        FIGURES,
        agreement_figure,
        bias_figure,
        cost_figure,
        figure_sections,
        intervals_figure,
        leaderboard_figure,
        paired_figure,
    )
    from dialbgm.report._format import LABELS, num, pval
    from dialbgm.report._html import FIGURE_CSS, REPORT_CSS
    from dialbgm.report._human import fraction, print_human
    from dialbgm.report._terminal import print_run
    from dialbgm.report._write import write_report_checked

__getattr__ = exports(__name__, _WHERE)
