"""One rule for queue names, applied wherever a name comes in (no I/O here)."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.core.errors import ConfigurationError
from conveyor.core.names import (
    OTHER_QUEUE,
    QUEUE_NAME_MAX,
    InvalidQueueName,
    check_queue_name,
)
from conveyor.core.settings import parse_queues

VALID = ["default", "a", "emails.high", "billing:eu-1", "Q_9", "x" * QUEUE_NAME_MAX]
INVALID = [
    "",
    " ",
    "x" * (QUEUE_NAME_MAX + 1),
    "two words",
    "tab\there",
    "new\nline",
    "trailing\n",
    "nul\0",
    "slash/",
    "star*",
    "é",
    "😀",
    "q\u200b",  # zero-width space
    OTHER_QUEUE,
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_pass_unchanged(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", [*INVALID, None, 7, b"default"])
def test_invalid_names_are_refused_naming_the_queue(name: object) -> None:
    with pytest.raises(InvalidQueueName) as info:
        check_queue_name(name)
    assert info.value.code == "invalid_queue_name"
    assert "queue name" in info.value.message and "letters, digits" in info.value.message
    assert isinstance(info.value.details["queue"], str)


def test_a_huge_name_is_quoted_back_shortened() -> None:
    with pytest.raises(InvalidQueueName) as info:
        check_queue_name("y" * 100_000)
    assert len(info.value.message) < 400
    assert len(info.value.details["queue"]) < 200


@pytest.mark.parametrize("name", [n for n in INVALID if n.strip() == n and n])
def test_worker_queue_specs_follow_the_rule(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_queues(f"default=2,{name}=1")
    assert "is invalid" in info.value.message


def test_worker_queue_specs_with_valid_names_still_parse() -> None:
    assert parse_queues("emails.high=3, billing:eu-1 ,Q_9=2") == {
        "emails.high": 3,
        "billing:eu-1": 1,
        "Q_9": 2,
    }


@pytest.mark.parametrize("name", ["", "two words", "x" * (QUEUE_NAME_MAX + 1)])
def test_a_job_type_with_an_invalid_queue_is_refused_at_definition(name: str) -> None:
    app = Conveyor()

    with pytest.raises(ConfigurationError) as info:

        @app.job(queue=name)
        async def handler() -> None:
            return None

    assert "job 'handler'" in info.value.message and "is invalid" in info.value.message
    assert [t.name for t in app.registry] == ["conveyor.webhook"]  # only the built-in type
