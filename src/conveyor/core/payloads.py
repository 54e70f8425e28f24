"""Payload rules beyond the schema: what PostgreSQL can store, and what must never be shown."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|"
    r"auth(orization)?|credentials?|session[-_]?id|cookie|signature|client[-_]?secret)$",
    re.IGNORECASE,
)


def unstorable_fields(value: Any, path: str = "") -> list[dict[str, str]]:
    """Fields holding text PostgreSQL cannot store (the NUL character, lone surrogates)."""
    problems: list[dict[str, str]] = []
    if isinstance(value, str):
        if "\x00" in value:
            problems.append(_problem(path, "contains the NUL character (\\u0000)"))
        elif _has_surrogate(value):
            problems.append(_problem(path, "contains an unpaired UTF-16 surrogate"))
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key) or _has_surrogate(str(key)):
                problems.append(_problem(child, "the key contains text that cannot be stored"))
            problems += unstorable_fields(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problems += unstorable_fields(item, f"{path}.{index}" if path else str(index))
    return problems


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "unstorable_string"}


def is_secret(name: str, extra: Iterable[str] = ()) -> bool:
    return name in extra or bool(SECRET_NAME.search(name))


def mask_secrets(value: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with every field named like a secret replaced by '***'."""
    extra = frozenset(extra)
    if isinstance(value, dict):
        return {
            k: MASK if is_secret(str(k), extra) else mask_secrets(v, extra)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v, extra) for v in value]
    return value
