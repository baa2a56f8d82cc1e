"""The paper-scale grid's cost, online versus batch with prompt-prefix caching, from the price table.

Prompt tokens per call come from a real dry-run (``plan_eval``: characters / 4 of the rendered
requests) of each shipped hosted text judge on the bundled sample, per variant; the shared prefix
is the rendered system prompt (few-shot examples are drawn per item, so they are not shared).
Nothing is called. Assumptions, printed with the table: 1,200 items, one order, one sample;
replies of 30 tokens without and 300 with chain of thought (reasoning tokens of GPT-5 not
counted); a provider caches a shared prefix only from 1,024 tokens on (OpenAI's documented
minimum, applied to every provider here).

    python benchmarks/bench_cost_grid.py            # prints a Markdown table
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ITEMS = 1200
JUDGES = ["gpt-4o", "gpt-5", "gemini-2.5-flash", "gemini-2.5-pro", "qwen-omni"]
VARIANTS = [
    {"cot": cot, "context": ctx, "few_shot": k}
    for cot, ctx, k in itertools.product((False, True), ("full", "summary"), (0, 3))
]
REPLY_TOKENS = {False: 30, True: 300}
MIN_CACHED_PREFIX = 1024
SAMPLE_LIMIT = 45  # the sample's last 3 items have no summary


def _measure(ws: Any, data: Path, judge: str, variant: dict[str, Any]) -> tuple[float, float, Any]:
    """(prompt tokens per call, shared-prefix tokens per call, price) from a dry-run on the sample."""
    from dialbgm.run import plan_eval, render_item

    (plan,) = plan_eval(ws, judge, data, None, variant)
    calls = plan.calls
    prep, idx = render_item(ws, judge, data, "s001", variant)
    system = prep.request(idx[0]).messages[0]["content"]
    return plan.prompt_tokens_est / calls, len(system) / 4, plan.price


def main() -> None:
    import os
    import tempfile

    from dialbgm.config import find_workspace, load_prices

    # An empty response cache: the dry-run must count every call as uncached.
    os.environ["DIALBGM_CACHE_DIR"] = tempfile.mkdtemp(prefix="dialbgm-cost-grid-")
    os.environ.pop("DIALBGM_CACHE_URL", None)
    ws = find_workspace(ROOT)
    prices = load_prices(ws)
    data = Path(os.environ["DIALBGM_CACHE_DIR"]) / "sample-with-summaries.jsonl"
    lines = ws.sample_data.read_text(encoding="utf-8").splitlines()[:SAMPLE_LIMIT]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = []
    totals = {"online": 0.0, "batch": 0.0, "batch_prefix": 0.0, "batch_any": 0.0, "no_batch_online": 0.0}
    for judge in JUDGES:
        online = batch = batch_prefix = batch_any = 0.0
        has_batch = True
        prompt_range: list[float] = []
        prefixes: list[float] = []
        for v in VARIANTS:
            per_call, prefix, price = _measure(ws, data, judge, v)
            prompt_range.append(per_call)
            prefixes.append(prefix)
            out = REPLY_TOKENS[v["cot"]] * ITEMS
            inp = per_call * ITEMS
            cached = prefix * (ITEMS - 1) if prefix >= MIN_CACHED_PREFIX else 0.0
            online += price.cost(inp, out)
            b = price.cost(inp, out, mode="batch")
            bp = price.cost(inp, out, cached_tokens=cached, mode="batch")
            # What caching would save if providers had no minimum prefix length (an upper bound).
            ba = price.cost(inp, out, cached_tokens=prefix * (ITEMS - 1), mode="batch")
            if b is None or bp is None or ba is None:
                has_batch = False
            else:
                batch += b
                batch_prefix += bp
                batch_any += ba
        rows.append((judge, price.model, prompt_range, prefixes, online, has_batch, batch, batch_prefix, batch_any))
        totals["online"] += online
        if has_batch:
            totals["batch"] += batch
            totals["batch_prefix"] += batch_prefix
            totals["batch_any"] += batch_any
        else:
            totals["no_batch_online"] += online
    n_calls = len(JUDGES) * len(VARIANTS) * ITEMS
    print(f"{prices.label()}; {len(JUDGES)} judges x {len(VARIANTS)} variants x {ITEMS:,} items = {n_calls:,} calls\n")
    print(
        "| judge (model) | prompt tokens per call | shared prefix | online USD | batch USD "
        "| batch + prefix caching USD | (no minimum prefix) |"
    )
    print("|---|---|---|---|---|---|---|")
    for judge, model, prompts, prefixes, online, has_batch, batch, bp, ba in rows:
        b, p, a = (f"{x:,.2f}" for x in (batch, bp, ba)) if has_batch else ("no batch rate cited", "–", "–")
        span = f"{min(prompts):,.0f}–{max(prompts):,.0f}"
        pre = f"{min(prefixes):,.0f}–{max(prefixes):,.0f}"
        print(f"| {judge} ({model}) | {span} | {pre} | {online:,.2f} | {b} | {p} | {a} |")
    extra = totals["no_batch_online"]
    print(
        f"| **all {n_calls:,} calls** | | | **{totals['online']:,.2f}** | **{totals['batch'] + extra:,.2f}** | "
        f"**{totals['batch_prefix'] + extra:,.2f}** | {totals['batch_any'] + extra:,.2f} |"
    )
    print(f"\n(cells without a batch rate are counted at their online cost in the totals: ${extra:,.2f})")


if __name__ == "__main__":
    main()
