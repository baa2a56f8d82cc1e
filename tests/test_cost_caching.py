"""Prompt-prefix caching and cost: the provider's cached-token counts are recorded per unit and in
the manifest, priced at the cached rate, and reported with what each cause saved; dry-runs show
the cost online and as a batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dialbgm.config import Workspace, add_unit_tokens, load_prices, price_tokens
from dialbgm.run import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
SCORES = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'


def _reply_with_cache(body: dict[str, Any], n: int) -> Reply:
    # OpenAI's usage with automatic prompt caching: the first call writes the prefix, later ones read it.
    cached = 0 if n == 1 else 1024
    usage = {
        "prompt_tokens": 1500,
        "completion_tokens": 20,
        "total_tokens": 1520,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
    }
    return Reply(
        body={
            "id": f"c{n}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "gpt-5"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": SCORES}}],
            "usage": usage,
        }
    )


def test_cached_tokens_are_recorded_priced_and_reported(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    (workspace.root / "prices").mkdir(exist_ok=True)
    (workspace.root / "prices" / "prices.toml").write_text((ROOT / "prices" / "prices.toml").read_text())
    with ScriptedOpenAIServer(_reply_with_cache) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "run",
            limit=5,
            overrides={"api_base": server.base_url, "model": "gpt-4o"},
        )
    units = [json.loads(ln) for ln in (res.out_dir / "units.jsonl").read_text().splitlines()]
    assert sorted(u["usage"].get("cached_tokens", 0) for u in units) == [0, 1024, 1024, 1024, 1024]
    m = res.manifest
    assert m["tokens"]["cached_tokens"] == 4 * 1024 and m["tokens"]["prompt_tokens"] == 5 * 1500
    cost = m["cost"]
    assert cost["priced"] and cost["prices"] == "prices v2 (2026-12-02)"
    charges = {c["rate"]: (c["tokens"], c["usd"]) for c in cost["charges"]}
    # gpt-4o: input $2.50, cached input $1.25, output $10 per 1M tokens.
    assert charges == {
        "input": (5 * 1500 - 4096, pytest.approx((5 * 1500 - 4096) * 2.5e-6)),
        "cached_input": (4096, pytest.approx(4096 * 1.25e-6)),
        "output": (100, pytest.approx(100 * 10e-6)),
    }
    assert cost["saved_prefix_cache_usd"] == pytest.approx(4096 * (2.5 - 1.25) / 1e6)
    assert cost["cost_this_run_usd"] == pytest.approx(sum(usd for _, usd in charges.values()))
    assert cost["saved_batch_usd"] == 0.0 and cost["cost_avoided_usd"] == 0.0

    # A re-run is served by the response cache: its manifest says what that avoided.
    with ScriptedOpenAIServer(_reply_with_cache) as server2:
        again = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "again",
            limit=5,
            overrides={"api_base": server.base_url, "model": "gpt-4o"},
        )
        assert server2.requests == []
    assert again.manifest["cost"]["cost_this_run_usd"] == 0.0
    assert again.manifest["cost"]["cost_avoided_usd"] == pytest.approx((5 * 1500 * 2.5 + 100 * 10) / 1e6)


def test_batch_units_are_priced_at_batch_rates_and_the_discount_reported() -> None:
    price = load_prices(Workspace(ROOT)).lookup("litellm", "gpt-5")
    assert price is not None
    from collections import Counter

    tok: Counter[str] = Counter()
    add_unit_tokens(tok, {"mode": "batch", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}})
    add_unit_tokens(tok, {"usage": {"prompt_tokens": 1000, "completion_tokens": 100, "cached_tokens": 800}})
    add_unit_tokens(tok, {"cache_hit": True, "usage": {"prompt_tokens": 1000, "completion_tokens": 100}})
    got = price_tokens(price, tok)
    batch = (1000 * 0.625 + 100 * 5) / 1e6
    online = (200 * 1.25 + 800 * 0.125 + 100 * 10) / 1e6
    assert got["cost_this_run_usd"] == pytest.approx(batch + online)
    assert got["saved_batch_usd"] == pytest.approx((1000 * 1.25 + 100 * 10) / 1e6 - batch)
    assert got["saved_prefix_cache_usd"] == pytest.approx(800 * (1.25 - 0.125) / 1e6)
    assert got["cost_avoided_usd"] == pytest.approx((1000 * 1.25 + 100 * 10) / 1e6)
    assert {c["rate"] for c in got["charges"]} == {"input", "cached_input", "output", "batch_input", "batch_output"}


def test_litellm_usage_of_each_provider_gives_cached_and_written_tokens() -> None:
    from litellm.types.utils import PromptTokensDetailsWrapper, Usage

    from dialbgm.calls.backends._litellm_replies import _usage

    openai = Usage(
        prompt_tokens=1500,
        completion_tokens=5,
        total_tokens=1505,
        prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=1024),
    )
    want = {"prompt_tokens": 1500, "completion_tokens": 5, "total_tokens": 1505, "cached_tokens": 1024}
    assert _usage(openai) == want
    # Anthropic, as litellm reports it: prompt_tokens counts the cache reads and writes in.
    anthropic = Usage(
        prompt_tokens=3000,
        completion_tokens=5,
        total_tokens=3005,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=1500,
    )
    got = _usage(anthropic)
    assert (got["cached_tokens"], got["cache_write_tokens"]) == (1000, 1500)
    plain = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    assert _usage(plain) == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_dry_run_of_eval_shows_the_cost_online_and_as_a_batch(workspace: Workspace) -> None:
    from dialbgm.cli._app import app

    (workspace.root / "prices").mkdir(exist_ok=True)
    (workspace.root / "prices" / "prices.toml").write_text((ROOT / "prices" / "prices.toml").read_text())
    out = CliRunner().invoke(app, ["eval", "--dry-run", "-j", "gpt-5", "--limit", "4"])
    assert out.exit_code == 0, out.output
    assert "as batch (est.)" in out.output and "nothing will be called" in out.output
    row = next(ln for ln in out.output.splitlines() if "gpt-5" in ln and "│" in ln)
    online, batch = (float(x) for x in [c.strip().lstrip("$") for c in row.split("│") if c.strip()][-2:])
    assert online > 0 and batch == pytest.approx(online / 2, abs=1e-4)  # gpt-5's batch rates are half
    qwen = CliRunner().invoke(app, ["eval", "--dry-run", "-j", "qwen-omni", "--limit", "2"])
    assert qwen.exit_code == 0, qwen.output
    assert "unknown" in next(ln for ln in qwen.output.splitlines() if "qwen-omni-turbo" in ln)


def test_reports_say_what_was_paid_at_which_rate_and_what_was_saved() -> None:
    from dialbgm.report._format import cost_lines

    rows: list[dict[str, Any]] = [
        {
            "priced": True,
            "charges": [
                {"rate": "input", "tokens": 1000, "usd": 0.0025},
                {"rate": "cached_input", "tokens": 800, "usd": 0.001},
            ],
            "cost_avoided_usd": 0.5,
            "saved_batch_usd": 0.25,
            "saved_prefix_cache_usd": 0.001,
        },
        {"priced": True, "charges": [{"rate": "input", "tokens": 500, "usd": 0.00125}], "cost_avoided_usd": 0.0,
         "saved_batch_usd": None, "saved_prefix_cache_usd": 0.0},
        {"priced": False, "cost_avoided_usd": None},  # an unpriced cell is left out, not summed as 0
    ]  # fmt: skip
    assert cost_lines(rows) == [
        "Paid by rate: cached_input 800 tokens $0.0010; input 1,500 tokens $0.0037.",
        "Saved: response cache $0.5000; batch discount unknown; prompt-prefix caching $0.0010.",
    ]
    offline = [{"priced": True, "charges": [], "cost_avoided_usd": 0.0, "saved_batch_usd": 0.0}]
    assert cost_lines(offline) == []


def _anthropic_reply(body: dict[str, Any], n: int) -> Reply:
    # Anthropic's Messages API reply: the first call writes the marked prefix, the next ones read it.
    usage = {
        "input_tokens": 200,
        "output_tokens": 20,
        "cache_creation_input_tokens": 1500 if n == 1 else 0,
        "cache_read_input_tokens": 0 if n == 1 else 1500,
    }
    return Reply(
        body={
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": SCORES}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


def test_cache_markers_reach_anthropic_on_the_wire_and_are_priced(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace.root / "prices").mkdir(exist_ok=True)
    (workspace.root / "prices" / "prices.toml").write_text((ROOT / "prices" / "prices.toml").read_text())
    (workspace.providers_dir / "anthropic.toml").write_text(
        'kind = "litellm"\nroute = "anthropic"\napi_key_env = "ANTHROPIC_API_KEY"\nconcurrency = 1\n'
        '[capabilities]\nstructured_output = "none"\n'
    )
    (workspace.judges_dir / "claude.toml").write_text(
        'provider = "anthropic"\nmodel = "claude-haiku-4-5"\ncache_markers = true\n'
        "[params]\ntemperature = 0.0\nmax_tokens = 256\n"
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with ScriptedOpenAIServer(_anthropic_reply) as server:
        base = server.base_url.removesuffix("/v1")
        res = run_eval(
            workspace, "claude", sample_path, out_dir=tmp_path / "run", limit=2, overrides={"api_base": base}
        )
        plain = run_eval(
            workspace,
            "claude",
            sample_path,
            out_dir=tmp_path / "plain",
            limit=2,
            overrides={"api_base": base, "cache_markers": False},
        )
    assert server.paths == ["/v1/messages"] * 2  # the second run was served from the response cache
    prep_messages = []
    from dialbgm.run import render_item

    for item in ("s001", "s002"):
        prep, idx = render_item(workspace, "claude", sample_path, item, overrides={"api_base": base})
        prep_messages.append(prep.request(idx[0]).messages)
    for body, messages in zip(server.requests, prep_messages, strict=True):
        system, user = messages[0]["content"], messages[1]["content"]
        assert body == {
            "model": "claude-haiku-4-5",
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": user}]}],
            "max_tokens": 256,
            "temperature": 0.0,
        }
    # The markers are not part of the cache key: the run without them was answered from the cache.
    assert plain.manifest["counts"]["cache_hits"] == 2
    assert res.manifest["config_hash"] != plain.manifest["config_hash"]
    cost = res.manifest["cost"]
    charges = {c["rate"]: c["tokens"] for c in cost["charges"]}
    assert charges == {"input": 400, "cache_write": 1500, "cached_input": 1500, "output": 40}
    # haiku: input $1, cache write $1.25, cache read $0.10 per 1M: the write costs more, the read saves.
    assert cost["saved_prefix_cache_usd"] == pytest.approx((1500 * (1.0 - 1.25) + 1500 * (1.0 - 0.10)) / 1e6)


def test_cache_markers_are_refused_where_the_provider_caches_by_itself(workspace: Workspace, sample_path: Path) -> None:
    from dialbgm.errors import ConfigError

    with pytest.raises(ConfigError, match="cache_markers = true is for providers"):
        run_eval(workspace, "gpt-4o", sample_path, limit=1, overrides={"cache_markers": True})


def _gemini_reply(body: dict[str, Any], n: int) -> Reply:
    # Gemini's implicit caching: cachedContentTokenCount is part of promptTokenCount.
    return Reply(
        body={
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": SCORES}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": 1400,
                "candidatesTokenCount": 20,
                "totalTokenCount": 1420,
                "cachedContentTokenCount": 1100,
            },
            "modelVersion": "gemini-2.5-flash",
        }
    )


def test_gemini_cached_content_tokens_are_recorded_and_priced(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace.root / "prices").mkdir(exist_ok=True)
    (workspace.root / "prices" / "prices.toml").write_text((ROOT / "prices" / "prices.toml").read_text())
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    with ScriptedOpenAIServer(_gemini_reply) as server:
        res = run_eval(
            workspace,
            "gemini-2.5-flash",
            sample_path,
            out_dir=tmp_path / "g",
            limit=2,
            overrides={"api_base": server.base_url},
        )
    assert all(p.endswith("/models/gemini-2.5-flash:generateContent") for p in server.paths)
    units = [json.loads(ln) for ln in (res.out_dir / "units.jsonl").read_text().splitlines()]
    assert [u["usage"]["cached_tokens"] for u in units] == [1100, 1100]
    assert [u["usage"]["prompt_tokens"] for u in units] == [1400, 1400]
    charges = {c["rate"]: c["tokens"] for c in res.manifest["cost"]["charges"]}
    assert charges == {"input": 600, "cached_input": 2200, "output": 40}
    # gemini-2.5-flash: input $0.30, cached input $0.03 per 1M tokens.
    assert res.manifest["cost"]["saved_prefix_cache_usd"] == pytest.approx(2200 * (0.30 - 0.03) / 1e6)


def test_eval_prints_what_it_paid_and_saved(workspace: Workspace, tmp_path: Path) -> None:
    from dialbgm.cli._app import app

    (workspace.root / "prices").mkdir(exist_ok=True)
    (workspace.root / "prices" / "prices.toml").write_text((ROOT / "prices" / "prices.toml").read_text())
    with ScriptedOpenAIServer(_reply_with_cache) as server:
        args = ["eval", "-j", "openai-compatible", "--limit", "2", "-q", "--out", str(tmp_path / "r")]
        sets = ["--set", f'api_base="{server.base_url}"', "--set", 'model="gpt-4o"']
        out = CliRunner().invoke(app, [*args, *sets])
    assert out.exit_code == 0, out.output
    # 2 calls of 1,500 prompt tokens (1,024 cached in the second), 20 out, at gpt-4o's rates.
    paid = ((3000 - 1024) * 2.5 + 1024 * 1.25 + 40 * 10) / 1e6
    assert f"cost: ${paid:.4f} paid (prices v2 (2026-12-02))" in out.output
    assert f"prefix caching saved ${1024 * 1.25 / 1e6:.4f}" in out.output
