"""Criteria are data: any number of named criteria from a template's criteria.toml or a judge
file, stated in the system prompt with their normalized weights; weights validated; --set
weights.NAME for any defined name; errors that name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, TemplateError
from dialbgm.run._prepare import render_item

runner = CliRunner()

FOUR = """\
[relevance]
title = "Contextual relevance"
description = "fits the talk."
weight = 4

[non_intrusiveness]
title = "Non-intrusiveness"
description = "stays in the background."
weight = 3

[consistency]
title = "Consistency"
description = "suits the whole talk."
weight = 2

[tempo]
description = "the tempo matches the pace of the talk."
weight = 1
"""


def system_prompt(ws: Workspace, judge: str = "local", overrides: dict[str, object] | None = None) -> str:
    prep, idx = render_item(ws, judge, ws.sample_data, "s001", overrides)
    content = prep.request(idx[0]).messages[0]["content"]
    assert isinstance(content, str)
    return content


def criteria_lines(system: str) -> list[str]:
    return [line for line in system.splitlines() if line.startswith("- ")]


def write_judge(ws: Workspace, name: str, body: str) -> Path:
    path = ws.judges_dir / f"{name}.toml"
    path.write_text('provider = "local"\nmodel = "smollm2-135m"\n' + body)
    return path


def test_a_template_states_every_criterion_of_its_criteria_toml(workspace: Workspace) -> None:
    # Old code: the three names were hard-coded (a fourth table was ignored, "three criteria").
    (workspace.prompts_dir / "weighted_criteria" / "criteria.toml").write_text(FOUR)
    local = workspace.judges_dir / "local.toml"
    text = local.read_text()
    local.write_text(text[: text.index("[weights]")] + text[text.index("[params]") :])  # the template's weights
    system = system_prompt(workspace)
    assert "Judge each candidate on four criteria, weighted as follows:" in system
    assert criteria_lines(system) == [
        "- Contextual relevance (weight 40%): fits the talk.",
        "- Non-intrusiveness (weight 30%): stays in the background.",
        "- Consistency (weight 20%): suits the whole talk.",
        "- Tempo (weight 10%): the tempo matches the pace of the talk.",  # title from the name
    ]
    # --set works for the template's new name, and the judge records the effective weights.
    system = system_prompt(workspace, overrides={"weights.tempo": 10})
    assert "- Tempo (weight 53%): the tempo matches the pace of the talk." in system
    assert load_judge(workspace, "local", {"weights.tempo": 10}).weights == {
        "relevance": 4.0,
        "non_intrusiveness": 3.0,
        "consistency": 2.0,
        "tempo": 10.0,
    }


def test_the_template_weights_are_the_default(workspace: Workspace) -> None:
    # Old code: the default weights were a constant in config.py; criteria.toml had no weights.
    path = workspace.prompts_dir / "weighted_criteria" / "criteria.toml"
    path.write_text(path.read_text().replace("weight = 0.5", "weight = 0.1"))
    assert load_judge(workspace, "random").weights == {"relevance": 0.1, "non_intrusiveness": 0.3, "consistency": 0.2}
    # A judge's [weights] table still wins over the template (local.toml says 0.5).
    assert load_judge(workspace, "local").weights["relevance"] == 0.5


def test_judge_criteria_replace_the_template_set_and_inherit_its_texts(workspace: Workspace) -> None:
    write_judge(
        workspace,
        "two",
        "[criteria.consistency]\nweight = 1\n"
        '[criteria.calm]\ntitle = "Calm"\ndescription = "the music is calm."\nweight = 3\n',
    )
    system = system_prompt(workspace, "two")
    assert "Judge each candidate on two criteria, weighted as follows:" in system
    assert criteria_lines(system) == [
        "- Consistency (weight 25%): the music suits the conversation as a whole, from its first turn to its "
        "last, rather than only one moment of it.",
        "- Calm (weight 75%): the music is calm.",
    ]
    judge = load_judge(workspace, "two")
    assert judge.weights == {"consistency": 1.0, "calm": 3.0}
    assert judge.criteria == {"consistency": {}, "calm": {"title": "Calm", "description": "the music is calm."}}
    # --set weights.NAME works for the judge's own name; a name it dropped is refused.
    assert "- Calm (weight 50%)" in system_prompt(workspace, "two", {"weights.calm": 1})
    with pytest.raises(ConfigError, match=r"--set weights.relevance: no criterion 'relevance'; the criteria are"):
        load_judge(workspace, "two", {"weights.relevance": 1})


def test_one_criterion_and_a_weight_from_the_template(workspace: Workspace) -> None:
    write_judge(workspace, "one", '[criteria.relevance]\ndescription = "fits."\n')
    system = system_prompt(workspace, "one")
    assert "Judge each candidate on one criterion, weighted as follows:" in system
    # Title and weight from the template's criterion of the same name, description from the judge.
    assert criteria_lines(system) == ["- Contextual relevance (weight 100%): fits."]


def test_normalization_is_stated_as_whole_percentages(workspace: Workspace) -> None:
    over = {"weights.relevance": 1, "weights.non_intrusiveness": 1, "weights.consistency": 1}
    lines = criteria_lines(system_prompt(workspace, overrides=over))
    assert [line.split(":")[0] for line in lines] == [
        "- Contextual relevance (weight 33%)",
        "- Non-intrusiveness (weight 33%)",
        "- Consistency (weight 33%)",
    ]
    # A zero weight is allowed (the criterion is stated at 0%), all zero is not.
    assert "Consistency (weight 0%)" in system_prompt(workspace, overrides={"weights.consistency": 0})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[criteria.calm]\nweight = 1\n", "two.toml: criteria.calm.description: required"),
        ('[criteria.calm]\ndescription = "x"\n', "two.toml: weights.calm: criterion 'calm' has no weight"),
        ('[criteria.calm]\ndescription = "x"\nweight = -1\n', "two.toml: criteria.calm.weight: must be a finite"),
        ('[criteria.calm]\ndescription = "x"\nweight = 1\ncolour = "red"\n', "two.toml: criteria.calm.colour: unknown"),
        ('[criteria.calm]\ndescription = ""\nweight = 1\n', "two.toml: criteria.calm.description: must be a non-empty"),
        ('[criteria."calm down"]\ndescription = "x"\nweight = 1\n', "criterion names are letters"),
        ('[criteria.calm]\ndescription = "x"\nweight = 0\n', "two.toml: weights: must not all be zero"),
        ("criteria = 3\n", "two.toml: criteria: must be a table"),
        ("[weights]\ntempo = 1\n", "two.toml: weights.tempo: no criterion 'tempo'; the criteria are relevance, "),
        (
            '[criteria.calm]\ndescription = "x"\nweight = 1\n[weights]\ncalm = 2\n',
            "two.toml: weights.calm: the weight of 'calm' is also given in criteria.calm.weight",
        ),
    ],
)
def test_bad_criteria_in_a_judge_file_name_the_file_and_key(workspace: Workspace, body: str, needle: str) -> None:
    write_judge(workspace, "two", body)
    with pytest.raises(ConfigError) as e:
        load_judge(workspace, "two")
    assert needle in str(e.value)
    assert str(workspace.judges_dir) in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[relevance]\ntitle = "R"\nweight = 1\n', "criteria.toml: relevance.description: required"),
        ('[relevance]\ndescription = "x"\nweight = "heavy"\n', "criteria.toml: relevance.weight: must be a finite"),
        ("relevance = 3\n", "criteria.toml: relevance: must be a table"),
        ("[relevance\n", "criteria.toml: not valid TOML"),
    ],
)
def test_bad_template_criteria_name_the_file_and_key(workspace: Workspace, text: str, needle: str) -> None:
    (workspace.prompts_dir / "weighted_criteria" / "criteria.toml").write_text(text)
    with pytest.raises(TemplateError, match=needle):
        load_judge(workspace, "local")


def test_a_template_criterion_without_a_weight_needs_one_from_the_judge(workspace: Workspace) -> None:
    path = workspace.prompts_dir / "weighted_criteria" / "criteria.toml"
    path.write_text(path.read_text().replace("weight = 0.2\n", ""))
    with pytest.raises(ConfigError, match=r"random.toml: weights.consistency: criterion 'consistency' has no weight"):
        load_judge(workspace, "random")
    assert load_judge(workspace, "local").weights["consistency"] == 0.2  # local.toml gives it


def test_unknown_and_custom_weights_on_the_command_line(workspace: Workspace) -> None:
    res = runner.invoke(app, ["render", "-j", "local", "-i", "s001", "--set", "weights.tempo=0.4"])
    assert res.exit_code == 2, res.output
    assert "--set weights.tempo: no criterion 'tempo'; the criteria are relevance, non_intrusiveness, consistency" in (
        res.output
    )
    write_judge(workspace, "two", '[criteria.calm]\ndescription = "calm."\nweight = 1\n')
    res = runner.invoke(app, ["render", "-j", "two", "-i", "s001", "--set", "weights.calm=0.4", "--json"])
    assert res.exit_code == 0, res.output
    assert "- Calm (weight 100%): calm." in json.loads(res.output)[0]["messages"][0]["content"]


def test_shipped_judges_keep_their_config_hash(workspace: Workspace) -> None:
    """The hashes computed with the original code (02a49bd): a judge that defines no criteria and
    no summarizer_template records exactly what it recorded before they existed."""
    expected = {
        "local": "2f10e2c10c1629153595bbae14bd876074cfdd518a5fb080b720811727bfdc9e",
        "random": "7b09219edbf7abd75f5b9a70ae41c8ec3b6835a546c2ad7ffed3da99533a0fb1",
        "embedding": "9c6cb13855eb318d412a54803268e86d2279ef760b3a0bc35a2a9fe75daf2ec7",
        "gpt-4o": "a64902195f0327f5f6100c2d07188f16a954a095722d6b8b53edc48460a9936d",
    }
    assert {name: load_judge(workspace, name).config_hash() for name in expected} == expected


def test_a_template_without_criteria_toml_takes_the_judges(workspace: Workspace) -> None:
    (workspace.prompts_dir / "weighted_criteria" / "criteria.toml").unlink()
    with pytest.raises(
        ConfigError, match=r"local.toml: weights.relevance: no criterion 'relevance'; the criteria are \(none\)"
    ):
        load_judge(workspace, "local")
    assert load_judge(workspace, "random").weights == {}  # renders no prompt: nothing to state
    write_judge(workspace, "own", '[criteria.calm]\ndescription = "calm."\nweight = 2\n')
    assert criteria_lines(system_prompt(workspace, "own")) == ["- Calm (weight 100%): calm."]


def test_weights_that_do_not_match_the_criteria_are_refused_when_rendering(workspace: Workspace) -> None:
    """A JudgeConfig built in code (not by load_judge) with weights for other criteria."""
    from dataclasses import replace

    from dialbgm.judging._prompts import PromptSet
    from tests.test_prompts import make_item

    judge = replace(load_judge(workspace, "local"), weights={"relevance": 1.0})
    item = make_item()
    with pytest.raises(TemplateError, match="do not match its criteria"):
        PromptSet(workspace.prompts_dir / "weighted_criteria").messages(judge, item, item.candidates)
