"""The item list of a run page: filters, sorting and pagination, as one SQL query on the index."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from dialbgm.metrics import METRICS
from dialbgm.web._index import RunIndex

PER_PAGE = 50
SORTS = {
    "pos": "run order",
    "item_id": "item id",
    "status": "status",
    **{m: m for m in METRICS},
    "consistency": "order consistency",
}
SHOWS = {
    "": "all items",
    "failed": "failed items",
    "ok": "scored items",
    "worst": "top pick = human's worst",
    "biased": "position-biased (top moved with the order)",
    "flipped": "top pick flipped vs another run",
}


@dataclass(frozen=True)
class ItemQuery:
    show: str = ""
    status: str = ""
    q: str = ""
    sort: str = "pos"
    desc: bool = False
    page: int = 1
    other: str = ""
    """Another run's key, for ``show=flipped``."""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ItemQuery:
        def pick(name: str, allowed: Mapping[str, str], default: str) -> str:
            v = params.get(name, default)
            return v if v in allowed else default

        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        return cls(
            show=pick("show", SHOWS, ""),
            status=params.get("status", "")[:64],
            q=params.get("q", "")[:200],
            sort=pick("sort", SORTS, "pos"),
            desc=params.get("desc") == "1",
            page=page,
            other=params.get("other", "")[:500],
        )

    def params(self, **change: Any) -> str:
        """This query as a URL query string, with ``change`` applied (defaults left out)."""
        q = replace(self, **change)
        pairs = {
            "show": q.show,
            "status": q.status,
            "q": q.q,
            "sort": "" if q.sort == "pos" else q.sort,
            "desc": "1" if q.desc else "",
            "page": "" if q.page == 1 else str(q.page),
            "other": q.other,
        }
        return urlencode({k: v for k, v in pairs.items() if v})


@dataclass
class ItemPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    statuses: dict[str, int] = field(default_factory=dict)


def list_items(index: RunIndex, query: ItemQuery, flipped: set[str] | None = None) -> ItemPage:
    where, args = ["1"], []
    if query.show == "failed":
        where.append("failed = 1")
    elif query.show == "ok":
        where.append("failed = 0")
    elif query.show == "worst":
        where.append("top_is_worst = 1")
    elif query.show == "biased":
        where.append("position_biased = 1")
    elif query.show == "flipped":
        where.append("item_id IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(sorted(flipped or ())))
    if query.status:
        where.append("status = ?")
        args.append(query.status)
    if query.q.strip():
        where.append("(instr(search, ?) > 0 OR instr(lower(item_id), ?) > 0)")
        args += [query.q.strip().casefold(), query.q.strip().lower()]
    cond = " AND ".join(where)
    direction = "DESC" if query.desc else "ASC"
    # Items without a value (failed ones have no metrics) go last whichever way.
    order = f"{query.sort} IS NULL, {query.sort} {direction}, pos"
    cols = (
        "pos, item_id, status, error, failed, n_units, top, top_is_worst, consistency, position_biased, "
        + ", ".join(METRICS)
    )
    with index.connect() as con:
        total = con.execute(f"SELECT count(*) FROM items WHERE {cond}", args).fetchone()[0]
        pages = max(1, math.ceil(total / PER_PAGE))
        page = min(query.page, pages)
        found = con.execute(
            f"SELECT {cols} FROM items WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, PER_PAGE, (page - 1) * PER_PAGE],
        ).fetchall()
        statuses = dict(con.execute("SELECT status, count(*) FROM items GROUP BY status ORDER BY status").fetchall())
    rows = []
    for r in found:
        row = dict(r)
        row["top"] = json.loads(row["top"]) if row["top"] else []
        rows.append(row)
    return ItemPage(rows, total, page, pages, statuses)


def flips(mine: RunIndex, other: RunIndex) -> set[str]:
    """Items scored in both runs whose top pick differs (as ``dialbgm diff`` counts a flip)."""
    a, b = mine.tops(), other.tops()
    return {i for i, top in a.items() if i in b and b[i] != top}
