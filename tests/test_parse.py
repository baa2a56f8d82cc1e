"""Replies → scores, or a recorded failure that is never a score."""

from __future__ import annotations

import json

import pytest

from dialbgm.judging._parse import extract_json_objects, listwise_schema, parse_reply, pointwise_schema
from dialbgm.judging._request import Response

LABELS = ["A", "B", "C", "D"]


def parse(text: str, finish: str | None = "stop", labels: list[str] | None = LABELS) -> tuple[str, object, object]:
    p = parse_reply(Response(text, finish), labels, 1, 10)
    return p.status, p.scores, p.error


@pytest.mark.parametrize(
    "text",
    [
        '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}',
        'Sure! Here is my answer:\n```json\n{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}\n```\nHope it helps.',
        'I think A fits best. {"scores": {"A": 9, "B": 2, "C": 5, "D": 7}} That is all.',
        '{"reasoning": "A is calm", "scores": {"[A]": "9", "Candidate B": 2, "c": 5.0, "D": 7}}',
        '{"note": 1} then {"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}',
    ],
)
def test_tolerant_extraction(text: str) -> None:
    status, scores, _ = parse(text)
    assert status == "ok"
    assert scores == {"A": 9.0, "B": 2.0, "C": 5.0, "D": 7.0}


@pytest.mark.parametrize(
    ("text", "finish", "status", "error"),
    [
        ("", "stop", "parse_error", "empty reply"),
        ("   \n", "stop", "parse_error", "empty reply"),
        ("A is the best, then D.", "stop", "parse_error", "no JSON object"),
        ('{"scores": {"A": 9, "B": 2, "C": 5}}', "stop", "parse_error", "no score for candidate(s) D"),
        ('{"scores": {"A": 9, "B": 2, "C": 5, "D": 11}}', "stop", "parse_error", "outside the scale"),
        ('{"scores": {"A": 9, "B": 2, "C": 5, "D": 7, "E": 1}}', "stop", "parse_error", "unknown candidate"),
        ('{"scores": {"A": "high", "B": 2, "C": 5, "D": 7}}', "stop", "parse_error", "not a number"),
        ('{"scores": {"A": true, "B": 2, "C": 5, "D": 7}}', "stop", "parse_error", "not a number"),
        ('{"scores": {"A": 9, "a": 8, "B": 2, "C": 5, "D": 7}}', "stop", "parse_error", "two scores"),
        ('{"scores": [9, 2, 5, 7]}', "stop", "parse_error", "no 'scores' object"),
        ('{"scores": {"A": 9, "B": 2, "C": 5, "D"', "length", "truncated", "token limit"),
        ("", "content_filter", "refused", "content_filter"),
    ],
)
def test_failures_are_statuses_not_scores(text: str, finish: str, status: str, error: str) -> None:
    got_status, scores, got_error = parse(text, finish)
    assert got_status == status
    assert scores is None
    assert error in str(got_error)


def test_pointwise_replies() -> None:
    assert parse('{"score": 7}', labels=None)[:2] == ("ok", {"A": 7.0})
    assert parse('{"reasoning": "ok", "score": "3"}', labels=None)[:2] == ("ok", {"A": 3.0})
    assert parse('{"score": 0}', labels=None)[0] == "parse_error"
    assert parse('{"scores": {"A": 3}}', labels=None)[0] == "parse_error"


def test_extract_json_objects_handles_braces_in_strings() -> None:
    objs = extract_json_objects('prefix {"a": "}{"} middle {"b": 2} end')
    assert objs == [{"a": "}{"}, {"b": 2}]


def test_schemas_require_every_label_and_put_reasoning_first() -> None:
    s = listwise_schema(LABELS, cot=True, lo=1, hi=10)
    assert list(s["properties"]) == ["reasoning", "scores"]
    assert s["properties"]["scores"]["required"] == LABELS
    assert s["properties"]["scores"]["additionalProperties"] is False
    assert pointwise_schema(False, 1, 5)["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 5}
    json.dumps(s)  # must be serialisable as sent
