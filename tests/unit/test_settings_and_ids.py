"""Settings from CONVEYOR_* variables, queue specs, and UUIDv7 job ids."""

from __future__ import annotations

import uuid

import pytest

from conveyor.core.errors import ConfigurationError
from conveyor.core.ids import is_job_id, new_job_id
from conveyor.core.settings import Settings, load_settings, parse_queues


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CONVEYOR_* variable from the outer environment leaks into these tests."""
    import os

    for key in list(os.environ):
        if key.startswith("CONVEYOR_"):
            monkeypatch.delenv(key)


# -- parse_queues -----------------------------------------------------------------------------


def test_parse_queues_weights() -> None:
    assert parse_queues("critical=6,default=3,low=1") == {"critical": 6, "default": 3, "low": 1}


def test_parse_queues_keeps_order() -> None:
    assert list(parse_queues("low=1,critical=6,default=3")) == ["low", "critical", "default"]


def test_bare_names_weigh_one() -> None:
    assert parse_queues("default") == {"default": 1}
    assert parse_queues("a,b=4,c") == {"a": 1, "b": 4, "c": 1}


def test_whitespace_and_empty_parts_ignored() -> None:
    assert parse_queues(" a = 2 , , b ,") == {"a": 2, "b": 1}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("", "empty"),
        ("  ", "empty"),
        (",,", "empty"),
        ("a=0", "'a' must be >= 1"),
        ("a=-2", "'a' must be >= 1"),
        ("a=x", "'a' must be a whole number"),
        ("a=1.5", "'a' must be a whole number"),
        ("=3", "empty queue name"),
        ("a=1,=2", "empty queue name"),
    ],
)
def test_parse_queues_errors(spec: str, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_queues(spec)
    assert needle in info.value.message
    assert info.value.code == "configuration_error"


# -- settings ---------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///./conveyor.db"
    assert s.redis_url is None
    assert s.redis_prefix == "conveyor"
    assert s.lease_seconds == 30.0
    assert s.heartbeat_seconds == 10.0
    assert s.concurrency == 10
    assert s.queues == "default"
    assert s.grace_seconds == 30.0
    assert s.max_payload_bytes == 1024 * 1024


def test_bad_database_url_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(database_url="nope")
    assert "CONVEYOR_DATABASE_URL" in info.value.message
    assert "must be a URL" in info.value.message


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LEASE_SECONDS", "3")
    monkeypatch.setenv("CONVEYOR_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("CONVEYOR_CONCURRENCY", "4")
    monkeypatch.setenv("CONVEYOR_QUEUES", "critical=6,low=1")
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://h/db")
    monkeypatch.setenv("CONVEYOR_REDIS_URL", "redis://localhost:6379/1")
    monkeypatch.setenv("CONVEYOR_REDIS_PREFIX", "px")
    s = load_settings()
    assert s.lease_seconds == 3.0
    assert s.heartbeat_seconds == 0.5
    assert s.concurrency == 4
    assert s.queues == "critical=6,low=1"
    assert s.database_url == "postgresql://h/db"
    assert s.redis_url == "redis://localhost:6379/1"
    assert s.redis_prefix == "px"


def test_env_var_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("conveyor_concurrency", "7")
    assert load_settings().concurrency == 7


def test_overrides_beat_env_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LEASE_SECONDS", "3")
    monkeypatch.setenv("CONVEYOR_CONCURRENCY", "4")
    s = load_settings(lease_seconds=9, concurrency=None)
    assert s.lease_seconds == 9.0
    assert s.concurrency == 4


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CONVEYOR_LEASE_SECONDS", "0"),
        ("CONVEYOR_LEASE_SECONDS", "abc"),
        ("CONVEYOR_CONCURRENCY", "0"),
        ("CONVEYOR_CONCURRENCY", "many"),
        ("CONVEYOR_GRACE_SECONDS", "-1"),
        ("CONVEYOR_REDIS_URL", "http://x"),
        ("CONVEYOR_DATABASE_URL", "conveyor.db"),
    ],
)
def test_bad_env_var_is_named(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert var in info.value.message
    assert info.value.message.startswith("invalid settings: ")


def test_several_problems_are_all_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(database_url="nope", concurrency=0)
    assert "CONVEYOR_DATABASE_URL" in info.value.message
    assert "CONVEYOR_CONCURRENCY" in info.value.message


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_redis_url_is_none(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    assert load_settings(redis_url=blank).redis_url is None
    monkeypatch.setenv("CONVEYOR_REDIS_URL", blank)
    assert load_settings().redis_url is None


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h/0", "unix:///tmp/r.sock"])
def test_redis_url_schemes(url: str) -> None:
    assert load_settings(redis_url=url).redis_url == url


def test_settings_ignores_unknown_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_NOT_A_SETTING", "1")
    assert isinstance(load_settings(), Settings)


def test_settings_direct_construction_validates() -> None:
    assert Settings(concurrency=2).concurrency == 2
    with pytest.raises(ValueError):
        Settings(concurrency=0)


# -- ids --------------------------------------------------------------------------------------


def test_new_job_id_is_uuid_v7() -> None:
    for _ in range(200):
        text = new_job_id()
        u = uuid.UUID(text)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert str(u) == text  # canonical lowercase, hyphenated
        assert len(text) == 36


def test_new_job_id_embeds_milliseconds() -> None:
    now_ns = 1_714_564_800_123_456_789
    u = uuid.UUID(new_job_id(now_ns))
    assert u.int >> 80 == now_ns // 1_000_000


def test_new_job_id_default_clock_is_now() -> None:
    import time

    before = time.time_ns() // 1_000_000
    ms = uuid.UUID(new_job_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after


def test_ids_are_unique_within_one_millisecond() -> None:
    ids = {new_job_id(1_700_000_000_000_000_000) for _ in range(1000)}
    assert len(ids) == 1000


def test_ids_sort_by_time_as_strings() -> None:
    base = 1_700_000_000_000_000_000
    times = [base + k * 1_000_000 for k in range(300)]  # one per millisecond
    times += [base + 10**15, base + 10**16, 2**47 * 1_000_000]  # far apart, big jumps
    ids = [new_job_id(t) for t in times]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_ids_at_zero_time() -> None:
    u = uuid.UUID(new_job_id(0))
    assert u.int >> 80 == 0
    assert u.version == 7


def test_is_job_id() -> None:
    assert is_job_id(new_job_id())
    assert is_job_id(str(uuid.uuid4()))
    assert is_job_id("00000000-0000-0000-0000-000000000000")
    assert not is_job_id("")
    assert not is_job_id("not-an-id")
    assert not is_job_id("0190a0b0-0000-7000-8000-00000000000")  # one digit short
    assert not is_job_id("0190a0b0-0000-7000-8000-00000000000g")


@pytest.mark.parametrize("value", [None, 123, 1.5, [], b"x" * 16])
def test_is_job_id_non_strings(value: object) -> None:
    assert is_job_id(value) is False  # type: ignore[arg-type]
