"""Writing ``report.html`` and ``report.md`` into a run or experiment folder, from its files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.analysis import data_warning, load_folder
from dialbgm.report._html import render_html
from dialbgm.report._markdown import render_md
from dialbgm.report._provenance import report_provenance


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
