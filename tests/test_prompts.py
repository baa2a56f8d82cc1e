"""Rendering: sandboxed templates, dialogue as data, neutral labels, variants, few-shot hygiene."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.data._items import Candidate, Dataset, Item, Turn
from dialbgm.errors import ConfigError, TemplateError
from dialbgm.judging._plan import FewShotPool, build_units, load_pool, presentation_order
from dialbgm.judging._prompts import PromptSet


def make_item(item_id: str = "x1", text: str = "Let's get coffee.", summary: str | None = "Coffee plans.") -> Item:
    return Item(
        id=item_id,
        dialogue=(Turn("A", text), Turn("B", "Sure, the quiet place on Elm Street?")),
        candidates=tuple(
            Candidate(f"secret-id-{k}", f"caption number {k}", None, r) for k, r in enumerate([3, 1, 4, 2])
        ),
        summary=summary,
    )


def test_dialogue_text_is_never_template_source(workspace: Workspace) -> None:
    judge = load_judge(workspace, "local")
    ps = PromptSet(workspace.prompts_dir / judge.template)
    item = make_item(text="{{ 7*7 }} {% for x in range(3) %}X{% endfor %} {{ ''.__class__ }}")
    user = ps.messages(judge, item, item.candidates)[-1]["content"]
    assert "{{ 7*7 }} {% for x in range(3) %}X{% endfor %} {{ ''.__class__ }}" in user
    assert "49" not in user and "XXX" not in user


def test_candidates_get_neutral_labels_never_ids(workspace: Workspace) -> None:
    judge = load_judge(workspace, "local")
    ps = PromptSet(workspace.prompts_dir / judge.template)
    item = make_item()
    text = json.dumps(ps.messages(judge, item, item.candidates))
    assert "secret-id" not in text
    for label, k in zip("ABCD", range(4), strict=True):
        assert f"[{label}] caption number {k}" in text


def test_weights_scale_and_format_are_stated(workspace: Workspace) -> None:
    judge = load_judge(
        workspace,
        "local",
        {"weights.relevance": 2, "weights.non_intrusiveness": 1, "weights.consistency": 1, "scale_max": 7},
    )
    ps = PromptSet(workspace.prompts_dir / judge.template)
    system = ps.messages(judge, make_item(), make_item().candidates)[0]["content"]
    assert "Contextual relevance (weight 50%)" in system
    assert "Non-intrusiveness (weight 25%)" in system
    assert "Consistency (weight 25%)" in system
    assert "from 1 (unsuitable) to 7 (ideal)" in system
    assert '{"scores": {"A": <integer>, "B": <integer>, "C": <integer>, "D": <integer>}}' in system


def test_variants_change_the_prompt(workspace: Workspace) -> None:
    base = load_judge(workspace, "local")
    ps = PromptSet(workspace.prompts_dir / base.template)
    item = make_item()
    full = ps.messages(base, item, item.candidates)
    summ = ps.messages(replace(base, context="summary"), item, item.candidates)
    cot = ps.messages(replace(base, cot=True), item, item.candidates)
    point = ps.messages(replace(base, mode="pointwise"), item, item.candidates[:1])
    assert "Sure, the quiet place" in full[-1]["content"] and "Coffee plans." not in full[-1]["content"]
    assert "Coffee plans." in summ[-1]["content"] and "Sure, the quiet place" not in summ[-1]["content"]
    assert '"reasoning"' in cot[0]["content"] and '"reasoning"' not in full[0]["content"]
    assert '{"score": <integer>}' in point[0]["content"]
    assert "caption number 0" in point[-1]["content"] and "caption number 1" not in point[-1]["content"]
    with pytest.raises(ConfigError, match="has no summary"):
        ps.messages(replace(base, context="summary"), make_item(summary=None), item.candidates)


def test_strict_undefined_fails_loudly(workspace: Workspace) -> None:
    folder = workspace.prompts_dir / "weighted_criteria"
    (folder / "system.j2").write_text("Hello {{ no_such_variable }}")
    judge = load_judge(workspace, "local")
    ps = PromptSet(folder)
    with pytest.raises(TemplateError, match="no_such_variable"):
        ps.messages(judge, make_item(), make_item().candidates)


def test_sandbox_blocks_unsafe_template_code(workspace: Workspace) -> None:
    folder = workspace.prompts_dir / "weighted_criteria"
    (folder / "system.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        PromptSet(folder).messages(load_judge(workspace, "local"), make_item(), make_item().candidates)


def test_unknown_template_is_a_clear_error(workspace: Workspace) -> None:
    with pytest.raises(TemplateError, match="no template 'nope'"):
        PromptSet(workspace.prompts_dir / "nope")


def test_presentation_order_is_seeded_and_independent_of_data_order() -> None:
    item = make_item()
    a = presentation_order(item, 0)
    assert a == presentation_order(item, 0)
    assert sorted(a) == [0, 1, 2, 3]
    orders = {presentation_order(make_item(item_id=f"i{k}"), 0) for k in range(40)}
    assert len(orders) > 10  # a fresh permutation per item, not one global shuffle
    assert {presentation_order(item, s) for s in range(30)} != {a}


def pool_of(items: list[Item], path: Path) -> Dataset:
    return Dataset(path, tuple(items), "0" * 64, "jsonl", frozenset(i.id for i in items))


def test_few_shot_never_uses_evaluated_items_and_is_deterministic(workspace: Workspace) -> None:
    judge = replace(load_judge(workspace, "local"), few_shot=2, few_shot_seed=7)
    evaluated = pool_of([make_item(f"e{k}", text=f"eval dialogue {k}") for k in range(3)], Path("eval"))
    # The pool holds the evaluated items too (same id, and same text under another id).
    pool_items = [make_item(f"p{k}", text=f"pool dialogue {k}") for k in range(5)]
    pool_items += [*evaluated.items, make_item("renamed", text="eval dialogue 1")]
    pool = FewShotPool(pool_of(pool_items, Path("pool")), evaluated)
    assert {i.id for i in pool.items} == {f"p{k}" for k in range(5)}
    units = build_units(evaluated, judge, pool)
    again = build_units(pool_of(list(reversed(evaluated.items)), Path("eval")), judge, pool)
    by_id = {u.item.id: u.shot_ids for u in again}
    for u in units:
        assert len(u.shots) == 2 and not set(u.shot_ids) & set(evaluated.ids)
        assert by_id[u.item.id] == u.shot_ids  # same shots whatever the execution order
    other_seed = build_units(evaluated, replace(judge, few_shot_seed=8), pool)
    assert [u.shot_ids for u in other_seed] != [u.shot_ids for u in units]


def test_few_shot_messages_and_pool_too_small(workspace: Workspace, sample_path: Path) -> None:
    ds = load_dataset(sample_path).limited(2)
    judge = replace(load_judge(workspace, "local"), few_shot=2)
    pool = load_pool(workspace.resolve(judge.few_shot_pool), ds)
    unit = build_units(ds, judge, pool)[0]
    msgs = PromptSet(workspace.prompts_dir / judge.template).messages(judge, unit.item, unit.shown, unit.shots)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    answer = json.loads(msgs[2]["content"])
    shot = unit.shots[0]
    # The example answer ranks the clips as the humans did.
    best_label = "ABCD"[[c.rank for c in shot.candidates].index(1)]
    assert max(answer["scores"], key=answer["scores"].get) == best_label
    with pytest.raises(ConfigError, match="few_shot=99"):
        build_units(ds, replace(judge, few_shot=99), pool)
