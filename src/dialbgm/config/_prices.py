"""The versioned price table (``prices/prices.toml``) and cost arithmetic.

Prices are data the user can check and edit, never fetched or taken from litellm's bundled map
(which changes with every litellm release and would make an old estimate unreproducible). A model
missing from the table has an *unknown* cost, reported as such rather than as zero.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError

PRICES_FILE = Path("prices") / "prices.toml"
LOCAL_KINDS_DEFAULT = ("random", "embedding", "llama_cpp_server", "clap")


@dataclass(frozen=True)
class Price:
    input_per_m: float
    output_per_m: float
    model: str
    local: bool = False

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6


@dataclass(frozen=True)
class PriceTable:
    version: str
    date: str
    path: str | None
    models: dict[str, tuple[float, float]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    local_kinds: tuple[str, ...] = LOCAL_KINDS_DEFAULT

    def lookup(self, provider_kind: str, model: str) -> Price | None:
        """The price of one model, 0 for judges that run on this machine, None when unknown."""
        if provider_kind in self.local_kinds:
            return Price(0.0, 0.0, model or provider_kind, local=True)
        # Exact names and listed aliases only: a prefix match would price gpt-4o-mini as gpt-4o.
        name = self.aliases.get(model, model)
        if name in self.models:
            i, o = self.models[name]
            return Price(i, o, name)
        return None

    def label(self) -> str:
        return f"prices v{self.version} ({self.date})" if self.path else "no price table"


def load_prices(ws: Workspace) -> PriceTable:
    # The workspace's table, else the built-in one (a workspace need not keep a price table).
    path = ws.find(PRICES_FILE.as_posix())
    if path is None:
        return PriceTable("none", "-", None)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    models: dict[str, tuple[float, float]] = {}
    aliases: dict[str, str] = {}
    raw_models: Any = data.get("models", {})
    if not isinstance(raw_models, dict):
        raise ConfigError(f"{path}: models: must be a table")
    for name, entry in raw_models.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: models.{name}: must be a table")
        for key in ("input", "output"):
            v = entry.get(key)
            # NaN passes "v < 0" and would then pass any --max-cost budget.
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{path}: models.{name}.{key}: must be a finite number >= 0 (USD per 1M tokens)")
        models[name] = (float(entry["input"]), float(entry["output"]))
        for alias in entry.get("aliases", []):
            aliases[str(alias)] = name
    local = data.get("local", {}).get("provider_kinds", list(LOCAL_KINDS_DEFAULT))
    return PriceTable(
        str(data.get("version", "?")), str(data.get("date", "?")), str(path), models, aliases, tuple(local)
    )
