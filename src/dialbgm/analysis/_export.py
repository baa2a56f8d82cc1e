"""``dialbgm export``: a run's (or an experiment's) rows as one CSV or Parquet file.

Rows are the records of :mod:`dialbgm.analysis._frames`, so an export and ``load_run(...).units`` agree.
Nested fields (``shown``, ``scores``, ``usage``...) become JSON text in both formats: the
candidates differ from item to item, so no fixed column set or Parquet struct fits them, and
JSON text round-trips through every tool. The file is written under a temporary name and
renamed into place, so an interrupted export leaves nothing that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from dialbgm.analysis._frames import TABLES, Experiment, Run, Table, to_frame
from dialbgm.errors import ConfigError, ResultsError

Format = Literal["csv", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "parquet")


def flat_records(source: Run | Experiment, table: Table) -> list[dict[str, Any]]:
    """The table's rows with every nested value turned into JSON text (keys sorted)."""
    return [
        {
            k: (json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, dict | list) else v)
            for k, v in r.items()
        }
        for r in source.records(table)
    ]


def default_path(source: Run | Experiment, table: Table, fmt: Format) -> Path:
    return source.path / f"{table}.{fmt}"


def export(source: Run | Experiment, table: Table, fmt: Format, out: Path | None = None) -> tuple[Path, int]:
    """Write ``table`` of ``source`` as ``fmt``; returns the path written and the row count."""
    if table not in TABLES:
        raise ConfigError(f"--table {table!r}: one of {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    path = out or default_path(source, table, fmt)
    df = to_frame(flat_records(source, table), source.columns(table))
    if fmt == "parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise ConfigError("--format parquet needs pyarrow: pip install 'dialbgm[parquet]'") from None
    if path.exists() and path.is_dir():
        raise ResultsError(f"{path}: is a folder; give a file name with --out")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except OSError as e:
        raise ResultsError(f"{path}: cannot be written ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path, len(df)
