"""Secret fields: which names are secrets, and masking them by name and by value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor import Conveyor
from conveyor.core.durations import MAX_TIMEOUT_S, parse_timeout
from conveyor.core.errors import InvalidDuration
from conveyor.core.payloads import MASK, is_secret, mask_secrets, masked_view
from conveyor.core.states import State
from conveyor.core.views import AttemptView, JobView

SECRET_NAMES = [
    "password", "Password", "db_password", "passwd", "pwd", "user-pwd", "passphrase",
    "secret", "client_secret", "secret_key", "secretKey", "SECRET_KEY", "secret_value",
    "token", "access_token", "refreshToken", "api_key", "apiKey", "X-Api-Key", "apikey",
    "access_key", "aws_secret_access_key", "private_key", "privateKey", "signing_key",
    "signingKey", "authorization", "Authorization", "auth", "basic_auth", "credential",
    "credentials", "session_id", "sessionId", "cookie", "signature", "database_url",
    "DATABASE_URL", "databaseUrl", "dsn", "sentry_dsn", "connection_string",
    "connectionString", "password_hint", "secrets",
]  # fmt: skip
INNOCENT_NAMES = [
    "author", "authors", "max_tokens", "tokenizer", "tokens", "keyword", "key", "user",
    "name", "url", "callback_url", "passenger", "compass", "session", "description",
    "signed", "cookies_accepted", "authority",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_are_recognised_in_any_case_and_spelling(name: str) -> None:
    assert is_secret(name)
    assert mask_secrets({name: "x", "n": 1}) == {name: MASK, "n": 1}


@pytest.mark.parametrize("name", INNOCENT_NAMES)
def test_innocent_names_are_shown(name: str) -> None:
    assert not is_secret(name)


def test_declared_secret_fields_are_masked_too() -> None:
    assert is_secret("pin", ["pin"]) and not is_secret("pin")


def view(**fields: object) -> JobView:
    base: dict[str, object] = {
        "id": "0190a4c4-1234-7abc-8def-0123456789ab",
        "type": "t",
        "queue": "default",
        "state": State.FAILED,
        "payload": {},
        "attempt": 1,
        "max_attempts": 1,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return JobView(**{**base, **fields})  # type: ignore[arg-type]


def test_secret_values_are_masked_wherever_they_appear() -> None:
    payload = {
        "user": "bob",
        "password": "hunter22",
        "db": {"DATABASE_URL": "postgres://u:p@h/db", "credentials": ["tok-1234", "ab"]},
        "pin": 12345678,
    }
    leaky = view(
        payload=payload,
        message="using hunter22 for bob",
        result={"echo": ["postgres://u:p@h/db!", {"k": "tok-1234"}], "token": "x", "n": 7},
        error={"type": "ValueError", "message": "bad hunter22", "traceback": "hunter22\nend"},
        attempts=[
            AttemptView(1, "w", None, None, "error", "ValueError", "pin 12345678", "tb hunter22"),
        ],
    )
    shown = masked_view(leaky, ["pin"])
    assert shown.payload == {
        "user": "bob",
        "password": MASK,
        "db": {"DATABASE_URL": MASK, "credentials": MASK},
        "pin": MASK,
    }
    assert shown.message == "using *** for bob"
    assert shown.result == {"echo": ["***!", {"k": "***"}], "token": MASK, "n": 7}
    assert shown.error == {"type": "ValueError", "message": "bad ***", "traceback": "***\nend"}
    (attempt,) = shown.attempts
    assert (attempt.error_message, attempt.traceback) == ("pin ***", "tb ***")
    assert leaky.payload["password"] == "hunter22"  # the view itself is not changed


def test_short_secret_values_are_not_masked_in_text_and_longest_values_win() -> None:
    leaky = view(
        payload={"pwd": "abc", "token": "abcdef", "secret": "abcdefgh"},
        message="abc abcdef abcdefgh",
    )
    assert masked_view(leaky).message == "abc *** ***"


def test_a_view_without_secrets_is_returned_as_it_is() -> None:
    plain = view(payload={"a": 1}, message="m", result={"r": "x"})
    assert masked_view(plain) == plain


# -- timeouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, "0s", "0ms", 1e308, "8d", MAX_TIMEOUT_S + 0.5])
def test_a_timeout_must_be_positive_and_at_most_seven_days(value: object) -> None:
    with pytest.raises(InvalidDuration, match=r"^timeout: .* more than 0 and at most 604800 s"):
        parse_timeout(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, "soon", float("nan"), float("inf"), True])
def test_a_timeout_must_be_a_duration(value: object) -> None:
    with pytest.raises(InvalidDuration, match=r"^timeout: "):
        parse_timeout(value)  # type: ignore[arg-type]


def test_timeouts_in_range() -> None:
    assert parse_timeout("1ms") == 0.001
    assert parse_timeout("7d") == MAX_TIMEOUT_S == 604800.0


@pytest.mark.parametrize("value", [0, "0s", 1e308, "8d"])
def test_a_job_type_timeout_must_be_positive_and_bounded(value: object) -> None:
    app = Conveyor()
    with pytest.raises(InvalidDuration, match="^timeout"):

        @app.job(timeout=value)  # type: ignore[arg-type]
        def handler() -> None: ...

    assert "handler" not in app.registry
