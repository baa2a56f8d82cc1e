"""The Jinja2 environment of the pages: autoescape on for every template, undefined names fail.

Text from data, judge replies and configs reaches a page only as a variable, so it is escaped as
HTML text; a template never marks such text ``|safe``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


@cache
def environment() -> Any:
    """One environment per process (templates are compiled once, then cached by Jinja)."""
    import jinja2

    from dialbgm.report import LABELS, fraction, num, pval
    from dialbgm.web._pages import item_url, run_url

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        # True, not select_autoescape(): a template named otherwise than *.html is escaped too.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    env.filters["pval"] = pval
    env.filters["fraction"] = fraction
    env.filters["when"] = when
    env.globals["LABELS"] = LABELS
    env.globals["run_url"] = run_url
    env.globals["item_url"] = item_url
    return env


def when(stamp: Any) -> str:
    """``2026-12-02T06:23:39.659512Z`` → ``2026-12-02 06:23 UTC`` (the files keep the full stamp)."""
    text = str(stamp or "")
    if len(text) >= 16 and text[10] == "T":
        return f"{text[:10]} {text[11:16]}" + (" UTC" if text.endswith(("Z", "+00:00")) else "")
    return text


def render(name: str, **context: Any) -> str:
    page: str = environment().get_template(name).render(**context)
    return page
