"""Terminal, HTML and Markdown views of runs and experiments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "LABELS",
    "num",
    "print_human",
    "print_run",
    "pval",
    "write_report_checked",
]

_WHERE = {
    "LABELS": "._format",
    "num": "._format",
    "print_human": "._human",
    "print_run": "._terminal",
    "pval": "._format",
    "write_report_checked": "._write",
}

if TYPE_CHECKING:
    from dialbgm.report._format import LABELS, num, pval
    from dialbgm.report._human import print_human
    from dialbgm.report._terminal import print_run
    from dialbgm.report._write import write_report_checked

__getattr__ = exports(__name__, _WHERE)
