"""The one storability check (core/storable.py): what it refuses, and how it names it."""

from __future__ import annotations

import json

import pytest

from conveyor.core.outcome import AttemptOutcome, ErrorInfo, checked_result
from conveyor.core.storable import (
    MAX_DEPTH,
    Unstorable,
    checked_json,
    clean_text,
    problems,
    text_problem,
)


def _nested(levels: int) -> object:
    """A list nested ``levels`` deep (the top level counts as one)."""
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "field", "kind"),
    [
        ({"a": "x\x00y"}, "a", "unstorable_string"),
        ({"a": ["ok", "\ud800"]}, "a.1", "unstorable_string"),
        ({"a": {"b\x00": 1}}, "a.b\x00", "unstorable_string"),
        ({"n": float("nan")}, "n", "non_finite_number"),
        ({"n": [float("-inf")]}, "n.0", "non_finite_number"),
        ({"s": {1, 2}}, "s", "not_json"),
        ({(1, 2): "tuple key"}, "", "not_json"),
    ],
)
def test_each_problem_is_named_by_its_field(value: object, field: str, kind: str) -> None:
    with pytest.raises(Unstorable) as caught:
        checked_json(value, "the payload")
    assert [(p["field"], p["type"]) for p in caught.value.problems] == [(field, kind)]
    assert caught.value.message.startswith("the payload cannot be stored: ")


def test_depth_is_limited_at_exactly_max_depth() -> None:
    text, size = checked_json(_nested(MAX_DEPTH), "v")
    assert json.loads(text) == _nested(MAX_DEPTH) and size == len(text)
    with pytest.raises(Unstorable, match=f"deeper than {MAX_DEPTH}"):
        checked_json(_nested(MAX_DEPTH + 1), "v")
    with pytest.raises(Unstorable):
        checked_json(_nested(5000), "v")  # past Python's own recursion limit too


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    value = {"text": "[" * 500 + "{" * 500, "list": [[[1]]] * 100}
    text, _ = checked_json(value, "v")
    assert json.loads(text) == value


def test_a_typed_backslash_u0000_is_text_not_a_nul() -> None:
    value = {"a": "\\u0000"}  # six characters: storable
    assert checked_json(value, "v")[0] == '{"a":"\\\\u0000"}'


def test_size_counts_utf8_bytes() -> None:
    assert checked_json({"a": "é"}, "v")[1] == len('{"a":"é"}'.encode())


def test_huge_integers_are_json() -> None:
    assert problems({"n": 10**30}) == []


def test_problems_are_capped_for_hostile_documents() -> None:
    assert len(problems(["\x00"] * 10_000)) == 20


def test_text_problem_and_clean_text() -> None:
    assert text_problem("fine é") is None
    assert "NUL" in (text_problem("a\x00") or "")
    assert "surrogate" in (text_problem("a\udcff") or "")
    assert clean_text("a\x00b\ud800c") == "a\\x00b\\ud800c"
    assert text_problem(clean_text("a\x00b\ud800c")) is None
    cut = clean_text("x" * 100, 40)
    assert len(cut) == 40 and cut.endswith("(truncated)")


def test_error_info_is_always_storable() -> None:
    info = ErrorInfo("Bad\x00" + "T" * 500, "m\ud800" * 10_000, "tb\x00")
    assert text_problem(info.type) is None and len(info.type) <= 200
    assert text_problem(info.message) is None and len(info.message) <= 8 * 1024
    assert info.traceback == "tb\\x00"


def test_an_exception_whose_str_raises_is_still_recorded() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    info = ErrorInfo.from_exception(Broken())
    assert info.type == "Broken" and "could not be read" in info.message


def test_checked_result_refuses_for_good() -> None:
    attempt = checked_result({"v": "a\x00"}, limit=1000)
    assert attempt.outcome is AttemptOutcome.ERROR and attempt.error
    assert (
        attempt.error.type == "UnstorableResult" and "v: contains the NUL" in attempt.error.message
    )
    big = checked_result("x" * 2000, limit=1000)
    assert big.error and big.error.type == "PayloadTooLarge"
    assert checked_result({"ok": [1, 2.5, None]}, limit=1000).outcome is AttemptOutcome.COMPLETED
