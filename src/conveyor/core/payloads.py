"""Secret fields: which payload and result fields must never be shown, and masking them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import lru_cache
from typing import Any

from conveyor.core.views import JobView

MASK = "***"
#: Shorter secret values are not searched for in text: they would hide ordinary words.
MIN_SECRET_CHARS = 4
# Matched against the name lower-cased with everything but letters and digits removed, so
# ``secret_key``, ``secretKey`` and ``SECRET-KEY`` are one name.
_SECRET_ENDINGS = (
    "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "accesskey",
    "privatekey", "signingkey", "secretkey", "authorization", "auth", "credential",
    "credentials", "sessionid", "cookie", "signature", "databaseurl", "dsn", "connectionstring",
)  # fmt: skip
_SECRET_BEGINNINGS = ("secret", "password")
_SECRET_WORDS = frozenset({"pass"})  # as a whole word only: "user_pass", not "compass"
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")


def is_secret(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether a field named ``name`` holds a secret (``extra``: names declared secret)."""
    return name in extra or _secret_name(name)


@lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    if flat.endswith(_SECRET_ENDINGS) or flat.startswith(_SECRET_BEGINNINGS):
        return True
    words = _WORDS.findall(name)
    return bool(words) and words[-1].lower() in _SECRET_WORDS


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


def masked_view(view: JobView, extra: Iterable[str] = ()) -> JobView:
    """``view`` as it may be shown: secret fields masked by name in its payload and result,
    and their values (``MIN_SECRET_CHARS`` or longer) masked wherever they appear in the
    result, the error, the progress message and every attempt's error."""
    extra = frozenset(extra)
    payload = mask_secrets(view.payload, extra)
    result = mask_secrets(view.result, extra)
    hide = _hider(view.payload, extra)
    if hide is None:
        return replace(view, payload=payload, result=result)
    return replace(
        view,
        payload=payload,
        result=_mask_strings(result, hide),
        message=_mask_strings(view.message, hide),
        error=_mask_strings(view.error, hide),
        attempts=[
            replace(a, error_message=_mask_strings(a.error_message, hide),
                    traceback=_mask_strings(a.traceback, hide))
            for a in view.attempts
        ],
    )  # fmt: skip


def _hider(payload: Any, extra: frozenset[str]) -> Callable[[str], str] | None:
    """A function masking the payload's secret values in a text; None if it has none."""
    values = sorted(set(_secret_values(payload, extra)), key=len, reverse=True)
    if not values:
        return None
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return lambda text: pattern.sub(MASK, text)


def _secret_values(value: Any, extra: frozenset[str], secret: bool = False) -> Iterator[str]:
    """The texts of every scalar under a secret-named field (numbers as written)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _secret_values(v, extra, secret or is_secret(str(k), extra))
    elif isinstance(value, list):
        for v in value:
            yield from _secret_values(v, extra, secret)
    elif secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= MIN_SECRET_CHARS:
            yield text


def _mask_strings(value: Any, hide: Callable[[str], str]) -> Any:
    """``value`` with ``hide`` applied to every string in it (keys left as they are)."""
    if isinstance(value, str):
        return hide(value)
    if isinstance(value, dict):
        return {k: _mask_strings(v, hide) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_strings(v, hide) for v in value]
    return value


def text_masker(payload: Any, extra: Iterable[str] = ()) -> Callable[[str], str] | None:
    """What masks ``payload``'s secret values in a text (an error message, a traceback, a log
    line) as ``masked_view`` does; None when the payload holds no secret value."""
    return _hider(payload, frozenset(extra))
