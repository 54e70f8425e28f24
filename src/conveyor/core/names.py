"""The rule every queue name follows, checked wherever a name comes in: enqueue options,
``@app.job(queue=...)``, a worker's ``--queues``/``CONVEYOR_QUEUES`` and schedules."""

from __future__ import annotations

import re

from conveyor.core.errors import ConveyorError

QUEUE_NAME_MAX = 100
#: 1 to 100 ASCII letters, digits, '_', '-', '.' or ':' (e.g. ``emails``, ``billing.eu-1:high``)
QUEUE_NAME_PATTERN = rf"[A-Za-z0-9_.:-]{{1,{QUEUE_NAME_MAX}}}"
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_SHOWN_MAX = 120  # characters of a refused name quoted back in the error


class InvalidQueueName(ConveyorError, ValueError):
    """A queue name is not 1 to 100 letters, digits, '_', '-', '.' or ':'."""

    code = "invalid_queue_name"

    def __init__(self, name: object) -> None:
        text = name if isinstance(name, str) else repr(name)
        shown = text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "…"
        super().__init__(
            f"queue name {shown!r} is invalid: use 1 to {QUEUE_NAME_MAX} ASCII letters, "
            "digits, '_', '-', '.' or ':'",
            queue=shown,
            pattern=QUEUE_NAME_PATTERN,
        )


def check_queue_name(name: object) -> str:
    """``name`` if it is a valid queue name; InvalidQueueName (naming it) otherwise."""
    if isinstance(name, str) and _QUEUE_NAME.fullmatch(name):
        return name
    raise InvalidQueueName(name)


#: The queue label under which views add up the queues beyond their limit; outside the rule
#: above (parentheses), so no queue can have it.
OTHER_QUEUE = "(other)"
