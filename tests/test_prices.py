"""The price table's rate kinds: batch, cached input and cache writes, and the cost function."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialbgm.config import RATE_KINDS, Workspace, load_prices
from dialbgm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _table(tmp_path: Path, text: str) -> Workspace:
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices.toml").write_text(text)
    return Workspace(tmp_path)


def test_shipped_table_cites_a_source_and_date_for_every_model_and_keeps_batch_at_half_price() -> None:
    table = load_prices(Workspace(ROOT))
    assert table.version == "2"
    import tomllib

    raw = tomllib.loads((ROOT / "prices" / "prices.toml").read_text())["models"]
    for name, entry in raw.items():
        assert entry["source"].startswith("https://"), name
        assert entry["rates_date"][:2] == "20" and entry["rates_from"], name
        price = table.lookup("litellm", name)
        assert price is not None
        if price.has_batch():  # every provider's batch API is half the online rate
            assert price.rate("batch_input") == pytest.approx(price.input_per_m / 2), name
            assert price.rate("batch_output") == pytest.approx(price.output_per_m / 2), name
        cached = price.rate("cached_input")
        assert cached is None or cached < price.input_per_m, name


def test_rates_by_kind_and_aliases(tmp_path: Path) -> None:
    table = load_prices(Workspace(ROOT))
    assert table.rate("litellm", "gpt-5-2025-08-07", "batch_cached_input") == 0.0625
    assert table.rate("litellm", "gpt-4o", "batch_cached_input") is None  # not cited: never guessed
    assert table.rate("litellm", "claude-haiku-4-5-20251001", "cache_write") == 1.25
    assert table.rate("random", "", "batch_output") == 0.0
    assert table.rate("litellm", "gpt-4o-mini", "input") is None
    assert set(RATE_KINDS) >= {"input", "output", "cached_input", "cache_write", "batch_input", "batch_output"}


def test_cost_splits_usage_by_rate_kind() -> None:
    table = load_prices(Workspace(ROOT))
    gpt5 = table.lookup("litellm", "gpt-5")
    assert gpt5 is not None
    # 1,000 prompt tokens of which 800 came from the provider's prefix cache, 100 out.
    parts = {c.kind: (c.tokens, c.usd) for c in gpt5.charges(1000, 100, cached_tokens=800) or []}
    assert parts == {
        "input": (200, pytest.approx(200 * 1.25 / 1e6)),
        "cached_input": (800, pytest.approx(800 * 0.125 / 1e6)),
        "output": (100, pytest.approx(100 * 10 / 1e6)),
    }
    assert gpt5.cost(1000, 100, cached_tokens=800) == pytest.approx((200 * 1.25 + 800 * 0.125 + 1000) / 1e6)
    assert gpt5.cost(1000, 100, mode="batch") == pytest.approx((1000 * 0.625 + 100 * 5) / 1e6)
    # gpt-4o has no cited cached rate inside a batch: cached tokens there cost the batch input rate.
    gpt4o = table.lookup("litellm", "gpt-4o")
    assert gpt4o is not None
    batch = gpt4o.charges(1000, 0, cached_tokens=800, mode="batch")
    assert batch is not None and [(c.kind, c.tokens) for c in batch] == [("batch_input", 1000), ("batch_output", 0)]
    # Anthropic: cache reads and writes at their own rates.
    haiku = table.lookup("litellm", "claude-haiku-4-5")
    assert haiku is not None
    assert haiku.cost(3000, 0, cached_tokens=1000, cache_write_tokens=1500) == pytest.approx(
        (500 * 1.0 + 1000 * 0.10 + 1500 * 1.25) / 1e6
    )
    # No batch rates cited for qwen-omni-turbo: its batch cost is unknown, not the online one.
    qwen = table.lookup("litellm", "qwen-omni-turbo")
    assert qwen is not None and qwen.cost(10, 10, mode="batch") is None and not qwen.has_batch()
    assert qwen.cost(1000, 0, cached_tokens=1000) == pytest.approx(1000 * 0.07 / 1e6)


def test_a_misspelt_or_half_batch_rate_is_refused(tmp_path: Path) -> None:
    ws = _table(tmp_path, "[models.m]\ninput = 1\noutput = 2\nbatch_inpt = 0.5\n")
    with pytest.raises(ConfigError, match=r"models\.m\.batch_inpt: not a rate kind"):
        load_prices(ws)
    (tmp_path / "prices" / "prices.toml").write_text("[models.m]\ninput = 1\noutput = 2\nbatch_input = 0.5\n")
    with pytest.raises(ConfigError, match="batch_input and batch_output go together"):
        load_prices(ws)
    (tmp_path / "prices" / "prices.toml").write_text("[models.m]\ninput = 1\noutput = 2\ncached_input = nan\n")
    with pytest.raises(ConfigError, match=r"models\.m\.cached_input: must be a finite number"):
        load_prices(ws)
