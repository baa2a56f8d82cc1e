"""Campaign files: every setting checked with its file, line and field; the seeded sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli import app
from dialbgm.config import Workspace
from dialbgm.data import load_dataset
from dialbgm.web import CampaignError, campaign_file, load_campaign
from tests.support.campaigns import write_campaign

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_campaign(tmp_path)
    monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _load(folder: Path, name: str = "demo"):
    ws = Workspace(folder)
    return load_campaign(campaign_file(name, ws), ws, folder / "data.jsonl")


def test_defaults_and_guideline(folder: Path) -> None:
    c = _load(folder)
    assert c.annotators == ("alice", "bob")
    assert (c.captions, c.ties, c.seed, c.consensus, c.min_listen_seconds) == (True, False, 7, "mean", 0.0)
    # The default guideline states the three criteria of the default template.
    for title in ("Contextual relevance", "Non-intrusiveness", "Consistency"):
        assert title in c.guideline
    assert c.gold is not None and c.gold.best("g1") == {"g1-piano"}


BAD = [
    ("seed = 7", 'seed = "seven"', 2, "seed", "must be an integer"),
    ("seed = 7", "seed = 7\nties = 3", 3, "ties", "true or false"),
    ('annotators = ["alice", "bob"]', 'annotators = ["alice", "alice"]', 1, "annotators", "listed twice"),
    ('annotators = ["alice", "bob"]', 'annotators = ["al/ice"]', 1, "annotators", "a name is letters"),
    ("seed = 7", "seed = 7\ncolour = 1", 3, "colour", "unknown setting"),
    ("seed = 7", 'seed = 7\nconsensus = "median"', 3, "consensus", "must be one of mean, kemeny"),
    ("seed = 7", "seed = 7\nmin_listen_seconds = -1", 3, "min_listen_seconds", "must be a finite number >= 0"),
    ("seed = 7", "seed = 7\nmin_listen_seconds = nan", 3, "min_listen_seconds", "must be a finite number >= 0"),
    ("seed = 7", "seed = 7\nmin_listen_seconds = inf", 3, "min_listen_seconds", "must be a finite number >= 0"),
    ("rate = 0.34", "rate = 2", 5, "gold.rate", "(0, 1]"),
    ('data = "gold.jsonl"', 'data = "nowhere.jsonl"', None, "<file>", "no such file"),
    ("seed = 7", "seed = = 7", 2, "<toml>", "Invalid"),
]


@pytest.mark.parametrize(("old", "new", "line", "field", "message"), BAD)
def test_bad_campaign_names_file_line_field_and_exits_2(
    folder: Path, old: str, new: str, line: int | None, field: str, message: str
) -> None:
    path = folder / "campaigns" / "demo.toml"
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(CampaignError) as e:
        _load(folder)
    problems = [p for p in e.value.problems if p.field == field]
    assert problems, e.value.problems
    assert message in problems[0].message
    if field != "<file>":
        assert problems[0].path == str(path) and problems[0].line == line
    result = runner.invoke(app, ["annotate", "status", "demo"])
    assert result.exit_code == 2, result.output
    assert field in result.output


def test_unknown_campaign_and_missing_annotators(folder: Path) -> None:
    result = runner.invoke(app, ["annotate", "status", "nope"])
    assert result.exit_code == 2 and "no campaign file" in result.output
    path = folder / "campaigns" / "demo.toml"
    path.write_text(path.read_text().replace('annotators = ["alice", "bob"]\n', ""))
    with pytest.raises(CampaignError, match="annotators: required"):
        _load(folder)


def test_data_named_twice_must_agree(folder: Path) -> None:
    path = folder / "campaigns" / "demo.toml"
    path.write_text('data = "gold.jsonl"\n' + path.read_text())
    with pytest.raises(CampaignError) as e:
        _load(folder)
    assert e.value.problems[0].field == "data" and e.value.problems[0].line == 1


def test_sequences_are_seeded_per_annotator_with_gold_inserted(folder: Path) -> None:
    c = _load(folder)
    data = load_dataset(folder / "data.jsonl", unranked=True)
    alice, again, bob = c.sequence("alice", data), c.sequence("alice", data), c.sequence("bob", data)
    assert [(s.item.id, s.gold) for s in alice] == [(s.item.id, s.gold) for s in again]
    # Every item once, and round(0.34 * 3) = 1 gold item, for each annotator.
    for seq in (alice, bob):
        assert sorted(s.item.id for s in seq if not s.gold) == ["d1", "d2", "d3"]
        assert [s.item.id for s in seq if s.gold] == ["g1"]
        assert [s.position for s in seq] == list(range(4))
    orders = {tuple(c.candidate_order(a, data.get(i), False)) for a in ("alice", "bob") for i in ("d1", "d2", "d3")}
    assert len(orders) > 1, "the candidates' order depends on annotator and item"
    other = load_campaign(c.path, Workspace(folder), folder / "data.jsonl")
    assert [s.item.id for s in other.sequence("alice", data)] == [s.item.id for s in alice]
    # Over many annotators the first item is not always the same: the order is shuffled.
    firsts = {c.sequence(f"a{n}", data)[0].item.id for n in range(30)}
    assert len(firsts) > 2
