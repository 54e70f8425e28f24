"""The one storability check: what every value Conveyor writes must satisfy.

PostgreSQL's ``jsonb`` and ``text`` refuse the NUL character and lone UTF-16 surrogates; JSON
has no NaN or Infinity; and documents nested deeper than the API can serialise would be
stored and then break every read that returns them. Payloads, results and schedule payloads
pass ``checked_json`` where they enter; text Conveyor makes from a handler's exception
(type, message, traceback) is made storable with ``clean_text`` instead of refused, since the
attempt has already failed and its error must still be recorded.
"""

from __future__ import annotations

import json
import math
from typing import Any

from conveyor.core.errors import ConveyorError
from conveyor.core.sizes import to_json

#: The deepest a stored JSON document may nest (objects and arrays), the top level being 1.
MAX_DEPTH = 64


class Unstorable(ConveyorError, ValueError):
    """A value cannot be stored."""

    code = "unstorable_value"

    def __init__(self, what: str, problems: list[dict[str, str]]) -> None:
        listed = "; ".join(f"{p['field'] or '(top level)'}: {p['message']}" for p in problems)
        super().__init__(f"{what} cannot be stored: {listed}", errors=problems)
        self.what = what
        self.problems = problems


def problems(value: Any, *, max_depth: int = MAX_DEPTH) -> list[dict[str, str]]:
    """Every reason ``value`` cannot be stored as JSON, each naming its field path."""
    found: list[dict[str, str]] = []
    _walk(value, "", 1, max_depth, found)
    return found


def _walk(value: Any, path: str, depth: int, max_depth: int, found: list[dict[str, str]]) -> None:
    if len(found) >= 20:  # enough to act on; a hostile document could name millions
        return
    if isinstance(value, str):
        reason = text_problem(value)
        if reason:
            found.append(_problem(path, reason, "unstorable_string"))
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if value.bit_length() > _INT_BITS and not _printable(value):
            found.append(_problem(path, "is an integer too long to write as JSON", "not_json"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            found.append(_problem(path, f"{value!r} is not a JSON number", "non_finite_number"))
    elif isinstance(value, dict | list | tuple):
        if depth > max_depth:
            found.append(
                _problem(path, f"nests deeper than {max_depth} levels", "too_deeply_nested")
            )
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    found.append(_problem(path, f"key {key!r} is not a string", "not_json"))
                    continue
                key = key if isinstance(key, str) else _JSON_KEY.encode(key)  # as JSON spells it
                child = f"{path}.{key}" if path else key
                reason = text_problem(key)
                if reason:
                    found.append(_problem(child, f"the key {reason}", "unstorable_string"))
                _walk(item, child, depth + 1, max_depth, found)
        else:
            for index, item in enumerate(value):
                _walk(item, f"{path}.{index}" if path else str(index), depth + 1, max_depth, found)
    else:
        found.append(_problem(path, f"a {type(value).__name__} is not JSON", "not_json"))


_JSON_KEY = json.JSONEncoder()
#: Below this many bits an integer is inside Python's default limit of 4,300 digits in text.
_INT_BITS = 14_000


def _printable(value: int) -> bool:
    """Whether Python will write ``value`` as text (it refuses past its digit limit)."""
    try:
        str(value)
    except ValueError:
        return False
    return True


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text``, or None."""
    if "\x00" in text:
        return "contains the NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired UTF-16 surrogate"
    return None


def _problem(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}


def checked_json(value: Any, what: str, *, max_depth: int = MAX_DEPTH) -> tuple[str, int]:
    """``value`` as compact JSON text and its size in UTF-8 bytes; Unstorable naming every
    bad field otherwise.

    One encoding does most of the work: a NUL appears as ``\\u0000`` in the text, a lone
    surrogate fails to encode, NaN fails the encoder, and a document with no more brackets
    than ``max_depth`` cannot nest deeper. Only a suspect value is walked.
    """
    try:
        text = to_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unstorable(what, problems(value, max_depth=max_depth) or [_not_json(exc)]) from None
    suspect = "\\u0000" in text  # (also when a backslash and "u0000" were typed as text)
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode())
        except UnicodeEncodeError:
            suspect = True
            size = len(text.encode("utf-8", "surrogatepass"))
    if not suspect and text.count("{") + text.count("[") > max_depth:
        suspect = True  # an upper bound on the depth: brackets inside strings count too
    if suspect:
        found = problems(value, max_depth=max_depth)
        if found:
            raise Unstorable(what, found)
    return text, size


def _not_json(exc: BaseException) -> dict[str, str]:
    return _problem("", f"is not JSON: {exc}", "not_json")


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` made storable: NUL shown as ``\\x00``, lone surrogates as ``\\udcxx``;
    cut to ``limit`` characters (marked) when given."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - len(_CUT))] + _CUT
    return text


_CUT = "...(truncated)"
