"""What every benchmark prints: the machine it ran on, then a Markdown table of its figures."""

from __future__ import annotations

import os
import platform


def print_report(rows: list[tuple[str, str]]) -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    print("\n| measure | figure |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
