"""litellm's per-call bookkeeping is off for dialbgm's calls only, and backends declare what the
engine and the runner use (real litellm against the loopback server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dialbgm.calls import Backend, Progress, UnitOutcome, make_backend, run_calls
from dialbgm.calls.backends import _lean as lean
from dialbgm.calls.backends._litellm import import_litellm
from dialbgm.config import load_judge, load_provider
from dialbgm.config._workspace import Workspace
from dialbgm.data import Candidate, Item
from dialbgm.judging import Request, Response
from tests.support.scripted_server import ScriptedOpenAIServer


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as s:
        yield s


def _ask(litellm: Any, url: str) -> Any:
    # A model in litellm's price list, so that litellm prices the reply when it is asked to.
    return asyncio.run(
        litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            api_base=url,
            api_key="sk-test-key-000",
            num_retries=0,
            max_retries=0,
        )
    )


def _judge_ask(litellm: Any, url: str) -> Any:
    async def go() -> Any:
        with lean.judge_call():
            return await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                api_base=url,
                api_key="sk-test-key-000",
                num_retries=0,
                max_retries=0,
            )

    return asyncio.run(go())


def test_the_switches_are_in_place_for_the_installed_litellm() -> None:
    """If a litellm upgrade renames what is switched, this says so (the calls only get slower)."""
    litellm = import_litellm()
    switched = lean.install(litellm)
    assert set(switched) >= {
        "Logging.response_cost_calculator",
        "Logging.async_success_handler",
        "litellm.utils.dispatch_success_logging",
    }
    assert lean.install(litellm) == switched  # idempotent: nothing is wrapped twice


def test_a_judge_call_is_not_priced_but_other_litellm_calls_are(server: ScriptedOpenAIServer) -> None:
    litellm = import_litellm()
    theirs = _ask(litellm, server.base_url)
    ours = _judge_ask(litellm, server.base_url)
    assert isinstance(theirs._hidden_params["response_cost"], float) and theirs._hidden_params["response_cost"] > 0
    assert ours._hidden_params["response_cost"] is None
    # What dialbgm reads is all there: the text, usage, and the model the server reported.
    assert ours.choices[0].message.content == theirs.choices[0].message.content
    assert ours.usage.prompt_tokens == 100 and ours.usage.completion_tokens == 20
    assert ours._hidden_params["provider_response_model"] == theirs._hidden_params["provider_response_model"]


def test_success_logging_is_skipped_for_judge_calls_unless_a_callback_wants_it(
    server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import litellm.utils as litellm_utils
    from litellm.integrations.custom_logger import CustomLogger

    litellm = import_litellm()
    scheduled: list[object] = []
    real = litellm_utils._schedule_async_success_logging

    def spy(**kwargs: Any) -> None:
        scheduled.append(kwargs["result"])
        real(**kwargs)

    monkeypatch.setattr(litellm_utils, "_schedule_async_success_logging", spy)
    for name in ("callbacks", "success_callback", "_async_success_callback", "input_callback"):
        monkeypatch.setattr(litellm, name, [])
    # litellm lists its own response cache as a callback once any of its modules makes a Cache.
    monkeypatch.setattr(litellm, "success_callback", ["cache"])
    monkeypatch.setattr(litellm, "_async_success_callback", ["cache"])
    _judge_ask(litellm, server.base_url)
    assert scheduled == []
    _ask(litellm, server.base_url)
    assert len(scheduled) == 1  # someone else's call: litellm as it is

    seen: list[object] = []

    class Recorder(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            seen.append(response_obj)

    monkeypatch.setattr(litellm, "callbacks", [Recorder()])

    async def judged_then_drained() -> str:
        with lean.judge_call():
            resp = await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                api_base=server.base_url,
                api_key="sk-test-key-000",
            )
        for _ in range(100):  # the callback runs in a task of its own
            if any(getattr(r, "id", None) == resp.id for r in seen):
                break
            await asyncio.sleep(0.02)
        return str(resp.id)

    judged = asyncio.run(judged_then_drained())
    assert len(scheduled) == 2  # a configured callback still gets its records
    assert judged in [getattr(r, "id", None) for r in seen]


class _Double:
    """A backend written against the Protocol alone: the engine must need nothing more."""

    kind = "double"
    cacheable = False
    score_range = (0.0, 1.0)
    integer_scores = False
    needs_messages = False
    needs_key = False

    def __init__(self) -> None:
        self.async_calls = 0

    def build_request(
        self,
        item: Item,
        shown: Sequence[Candidate],
        messages: list[dict[str, Any]] | None,
        schema: dict[str, Any] | None,
        sample: int,
    ) -> Request:
        return Request(backend="double", model="m", identity={}, messages=[], sample=sample)

    def complete(self, request: Request) -> Response:
        raise AssertionError("the engine awaits acomplete; complete is for synchronous callers")

    async def acomplete(self, request: Request) -> Response:
        self.async_calls += 1
        return Response('{"score": 0.5}', "stop", "m")

    def close(self) -> None:
        return None


def test_the_engine_calls_the_declared_async_method(workspace: Workspace) -> None:
    double = _Double()
    backend: Backend = double  # mypy checks the double against the Protocol
    provider = load_provider(workspace, "random")
    work = [(i, f"u{i}", Request(backend="double", model="m", identity={}, messages=[], sample=i)) for i in range(5)]
    outcomes: dict[int, UnitOutcome] = {}
    made = run_calls(
        backend,
        provider,
        iter(work),
        len(work),
        cache=None,
        journal=None,
        progress=Progress(len(work)),
        on_outcome=outcomes.__setitem__,
    )
    assert made == 5 and double.async_calls == 5
    assert all(o.response is not None and o.response.text == '{"score": 0.5}' for o in outcomes.values())


@pytest.mark.parametrize("name", ["random", "openai-compatible"])
def test_every_backend_declares_its_abilities(workspace: Workspace, name: str) -> None:
    judge = load_judge(workspace, name)
    backend = make_backend(judge, load_provider(workspace, judge.provider), workspace)
    try:
        assert isinstance(backend.needs_key, bool) and isinstance(backend.needs_messages, bool)
        assert asyncio.iscoroutinefunction(backend.acomplete)
        assert backend.needs_key is (name != "random")
    finally:
        backend.close()


def test_the_random_backend_answers_alike_on_both_paths(workspace: Workspace) -> None:
    judge = load_judge(workspace, "random")
    backend = make_backend(judge, load_provider(workspace, "random"), workspace)
    req = Request(backend="random", model="uniform", identity={"seed": 0, "item": "i1"}, messages=[], order=("a", "b"))
    assert asyncio.run(backend.acomplete(req)) == backend.complete(req)


def test_the_cache_entry_redacts_exactly_as_before(tmp_path: Path) -> None:
    """Shared objects are redacted once per run; the stored key parts are what redact() gives."""
    from dialbgm.calls import ResponseCache
    from dialbgm.storage import redact

    shared_rf = {"type": "json_object", "schema": {"type": "object", "properties": {"A": {"enum": [1, 2]}}}}
    identity = {"gguf": "m.gguf", "token": "t-secret-value"}
    cache = ResponseCache(tmp_path / "cache")
    for seed in range(3):
        params = {"seed": seed, "response_format": shared_rf, "api_key": "sk-x", "base_url": "http://u:p@h/v1"}
        req = Request(backend="litellm", model="openai/m", identity=identity, messages=[], params=params, sample=seed)
        parts = req.key_parts()
        assert cache._redact_parts(parts) == redact(parts)
        cache.put(req, Response("{}", "stop", "m"))
    assert len(cache._redacted) == 2  # the response format and the identity, once each
