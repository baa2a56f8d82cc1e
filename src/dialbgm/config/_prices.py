"""The versioned price table (``prices/prices.toml``) and cost arithmetic.

Prices are data the user can check and edit, never fetched or taken from litellm's bundled map at
run time (it changes with every litellm release and would make an old estimate unreproducible). A
model missing from the table has an *unknown* cost, reported as such rather than as zero; so does a
batch cost when the table has no batch rates for the model. A cached or cache-write token without
its own rate is priced at the plain input rate of the same mode: no saving is ever claimed that the
table does not state.
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError

PRICES_FILE = Path("prices") / "prices.toml"
LOCAL_KINDS_DEFAULT = ("random", "embedding", "llama_cpp_server", "clap")

RateKind = Literal[
    "input",
    "output",
    "cached_input",
    "cache_write",
    "batch_input",
    "batch_output",
    "batch_cached_input",
    "batch_cache_write",
]
RATE_KINDS: tuple[RateKind, ...] = get_args(RateKind)
Mode = Literal["online", "batch"]
PriceMode = Mode
"""How calls are sent, for pricing: online, or through a provider's batch API."""
MODE_KINDS: dict[Mode, tuple[RateKind, RateKind, RateKind, RateKind]] = {
    "online": ("input", "output", "cached_input", "cache_write"),
    "batch": ("batch_input", "batch_output", "batch_cached_input", "batch_cache_write"),
}
"""Per mode: the rate kinds of plain input, output, cached input and cache writes."""
_TEXT_FIELDS = ("aliases", "note", "source", "rates_from", "rates_date")


@dataclass(frozen=True)
class Charge:
    """Tokens billed at one rate kind and what they cost (USD)."""

    kind: RateKind
    tokens: float
    usd: float


@dataclass(frozen=True)
class Price:
    input_per_m: float
    output_per_m: float
    model: str
    local: bool = False
    rates: Mapping[str, float] = field(default_factory=dict)
    """Every rate the table gives for the model, USD per 1M tokens, by :data:`RateKind`."""

    def rate(self, kind: RateKind) -> float | None:
        """USD per 1M tokens at ``kind``, or None when the table does not give that rate."""
        if self.local:
            return 0.0
        if kind == "input":
            return self.input_per_m
        if kind == "output":
            return self.output_per_m
        return self.rates.get(kind)

    def has_batch(self) -> bool:
        return self.local or ("batch_input" in self.rates and "batch_output" in self.rates)

    def charges(
        self,
        input_tokens: float,
        output_tokens: float,
        *,
        cached_tokens: float = 0,
        cache_write_tokens: float = 0,
        mode: Mode = "online",
    ) -> list[Charge] | None:
        """What each part of a call's usage costs, or None when ``mode`` has no rates here.

        ``input_tokens`` is the prompt as the provider reports it, cached and cache-written
        tokens included (OpenAI, Gemini and litellm's Anthropic usage all count them in it)."""
        k_in, k_out, k_cached, k_write = MODE_KINDS[mode]
        base_in, base_out = self.rate(k_in), self.rate(k_out)
        if base_in is None or base_out is None:
            return None
        cached = max(0, min(cached_tokens, input_tokens))
        written = max(0, min(cache_write_tokens, input_tokens - cached))
        parts: list[tuple[RateKind, float, float]] = [(k_in, input_tokens - cached - written, base_in)]
        for kind, n in ((k_cached, cached), (k_write, written)):
            r = self.rate(kind)
            if n:  # no rate of its own: billed as plain input (the table claims no saving it does not cite)
                parts.append((kind, n, r) if r is not None else (k_in, n, base_in))
        parts.append((k_out, output_tokens, base_out))
        merged: dict[RateKind, tuple[float, float]] = {}
        for kind, n, r in parts:
            t, usd = merged.get(kind, (0, 0.0))
            merged[kind] = (t + n, usd + n * r / 1e6)
        return [Charge(k, t, usd) for k, (t, usd) in merged.items()]

    def cost(
        self,
        input_tokens: float,
        output_tokens: float,
        *,
        cached_tokens: float = 0,
        cache_write_tokens: float = 0,
        mode: Mode = "online",
    ) -> float | None:
        """USD for one usage at ``mode``; None when the table has no rates for that mode.

        Fractional token counts (estimates) are priced as they are, not rounded."""
        if not cached_tokens and not cache_write_tokens:
            k_in, k_out = MODE_KINDS[mode][:2]
            i, o = self.rate(k_in), self.rate(k_out)
            return None if i is None or o is None else (input_tokens * i + output_tokens * o) / 1e6
        parts = self.charges(
            input_tokens, output_tokens, cached_tokens=cached_tokens, cache_write_tokens=cache_write_tokens, mode=mode
        )
        return None if parts is None else sum(c.usd for c in parts)


_FIELDS = {"prompt_tokens": "in", "completion_tokens": "out", "cached_tokens": "cached", "cache_write_tokens": "write"}


def add_unit_tokens(tok: Counter[str], unit: Mapping[str, Any]) -> None:
    """Add one unit row's tokens to ``tok`` by (hit | paid | batch) × (in | out | cached | write):
    ``paid`` went online, ``batch`` through a provider's batch API (a unit with ``"mode":
    "batch"``), ``hit`` came from the response cache. A unit asked again paid for its earlier
    replies too (they are kept in its ``attempts_history``)."""
    for reply in [unit, *(unit.get("attempts_history") or [])]:
        usage = reply.get("usage") or {}
        where = "hit" if reply.get("cache_hit") else "batch" if reply.get("mode") == "batch" else "paid"
        for name, short in _FIELDS.items():
            tok[f"{where}_{short}"] += int(usage.get(name) or 0)


def price_tokens(price: Price, tok: Counter[str]) -> dict[str, Any]:
    """What tokens (counted by :func:`add_unit_tokens`) cost, and what was saved by each cause:
    the response cache (hits priced online), the batch discount and prompt-prefix caching. None
    where the table cannot say."""

    def at(where: str, mode: Mode, caching: bool = True) -> float | None:
        cached = tok[f"{where}_cached"] if caching else 0
        written = tok[f"{where}_write"] if caching else 0
        usd: float | None = price.cost(
            tok[f"{where}_in"], tok[f"{where}_out"], cached_tokens=cached, cache_write_tokens=written, mode=mode
        )
        return usd

    charges: dict[str, list[float]] = {}
    modes: tuple[tuple[str, Mode], ...] = (("paid", "online"), ("batch", "batch"))
    for where, mode in modes:
        parts = price.charges(
            tok[f"{where}_in"],
            tok[f"{where}_out"],
            cached_tokens=tok[f"{where}_cached"],
            cache_write_tokens=tok[f"{where}_write"],
            mode=mode,
        )
        for c in parts or []:
            if c.tokens:
                t, usd = charges.get(c.kind, [0.0, 0.0])
                charges[c.kind] = [t + c.tokens, usd + c.usd]
    sent_batch = bool(tok["batch_in"] or tok["batch_out"])
    online, batch = at("paid", "online"), at("batch", "batch") if sent_batch else 0.0
    paid = _add(online, batch)
    avoided = at("hit", "online", caching=False)
    # Cache writes (Anthropic's markers) cost more than plain input: this saving can be negative.
    prefix: float | None = 0.0
    for w, m in modes:
        if tok[f"{w}_cached"] or tok[f"{w}_write"]:
            prefix = _add(prefix, _sub(at(w, m, caching=False), at(w, m)))
    return {
        "cost_usd": _add(paid, avoided),
        "cost_this_run_usd": paid,
        "cost_avoided_usd": avoided,
        "saved_batch_usd": _sub(at("batch", "online"), batch) if sent_batch else 0.0,
        "saved_prefix_cache_usd": prefix,
        "charges": [{"rate": k, "tokens": int(v[0]), "usd": v[1]} for k, v in sorted(charges.items())],
    }


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass(frozen=True)
class PriceTable:
    version: str
    date: str
    path: str | None
    models: dict[str, tuple[float, float]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    local_kinds: tuple[str, ...] = LOCAL_KINDS_DEFAULT
    extra_rates: dict[str, dict[str, float]] = field(default_factory=dict)
    """Rates beyond input/output (cached, cache write, batch), by model."""

    def lookup(self, provider_kind: str, model: str) -> Price | None:
        """The price of one model, 0 for judges that run on this machine, None when unknown."""
        if provider_kind in self.local_kinds:
            return Price(0.0, 0.0, model or provider_kind, local=True)
        # Exact names and listed aliases only: a prefix match would price gpt-4o-mini as gpt-4o.
        name = self.aliases.get(model, model)
        if name in self.models:
            i, o = self.models[name]
            return Price(i, o, name, rates=dict(self.extra_rates.get(name, {})))
        return None

    def rate(self, provider_kind: str, model: str, kind: RateKind) -> float | None:
        """One rate (USD per 1M tokens) of one model, or None when the table does not give it."""
        price = self.lookup(provider_kind, model)
        return None if price is None else price.rate(kind)

    def label(self) -> str:
        return f"prices v{self.version} ({self.date})" if self.path else "no price table"


def _rate(path: Path, name: str, key: str, v: Any) -> float:
    # NaN passes "v < 0" and would then pass any --max-cost budget.
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"{path}: models.{name}.{key}: must be a finite number >= 0 (USD per 1M tokens)")
    return float(v)


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
    extra: dict[str, dict[str, float]] = {}
    aliases: dict[str, str] = {}
    raw_models: Any = data.get("models", {})
    if not isinstance(raw_models, dict):
        raise ConfigError(f"{path}: models: must be a table")
    for name, entry in raw_models.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: models.{name}: must be a table")
        unknown = sorted(set(entry) - set(RATE_KINDS) - set(_TEXT_FIELDS))
        if unknown:  # a misspelt rate would silently price every call at the plain rate
            raise ConfigError(
                f"{path}: models.{name}.{unknown[0]}: not a rate kind ({', '.join(RATE_KINDS)}) "
                f"nor one of {', '.join(_TEXT_FIELDS)}"
            )
        models[name] = (
            _rate(path, name, "input", entry.get("input")),
            _rate(path, name, "output", entry.get("output")),
        )
        extra[name] = {k: _rate(path, name, k, entry[k]) for k in RATE_KINDS[2:] if k in entry}
        if ("batch_input" in entry) != ("batch_output" in entry):
            raise ConfigError(f"{path}: models.{name}: batch_input and batch_output go together")
        for alias in entry.get("aliases", []):
            aliases[str(alias)] = name
    local = data.get("local", {}).get("provider_kinds", list(LOCAL_KINDS_DEFAULT))
    return PriceTable(
        str(data.get("version", "?")), str(data.get("date", "?")), str(path), models, aliases, tuple(local), extra
    )
