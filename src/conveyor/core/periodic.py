"""Schedules defined in code (``@app.periodic``, ``app.schedule``), checked when defined."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from conveyor.core.errors import InvalidPayload
from conveyor.core.names import check_queue_name
from conveyor.core.registry import Registry
from conveyor.core.schedule import CatchUp, InvalidSchedule, Overlap, Spec, parse_spec
from conveyor.core.storable import Unstorable, checked_json, text_problem

NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    name: str
    job_type: str
    spec: Spec
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    overlap: Overlap = Overlap.ALLOW
    catch_up: CatchUp = CatchUp.LATEST

    def as_row(self) -> dict[str, Any]:
        """The columns the store keeps for it."""
        return {
            "name": self.name,
            "job_type": self.job_type,
            "payload": self.payload,
            "queue": self.queue,
            "cron": self.spec.cron,
            "every_s": self.spec.every_s,
            "tz": self.spec.tz,
            "overlap": self.overlap.value,
            "catch_up": self.catch_up.value,
        }


def define(
    registry: Registry,
    name: str,
    job_type: str,
    *,
    cron: str | None = None,
    every: str | float | timedelta | None = None,
    tz: str = "UTC",
    payload: Mapping[str, Any] | None = None,
    queue: str | None = None,
    overlap: str = "allow",
    catch_up: str = "latest",
) -> ScheduleDef:
    """A schedule, or a clear error naming what is wrong with it (nothing half-defined)."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
        raise InvalidSchedule(f"a schedule needs a name of 1 to {NAME_MAX} characters")
    _check_text("name", name)
    if queue is not None:
        check_queue_name(queue)  # InvalidQueueName names it
    spec = parse_spec(cron=cron, every=every, tz=tz)
    kind = registry.get(job_type)  # UnknownJobType names the known ones
    checked = kind.validate(payload or {})  # InvalidPayload names each bad field
    try:
        checked_json(checked, "the payload")  # what PostgreSQL could not store
    except Unstorable as exc:
        raise InvalidPayload(kind.name, exc.problems) from None
    return ScheduleDef(
        name=name,
        job_type=kind.name,
        spec=spec,
        payload=checked,
        queue=queue,
        overlap=_choice(Overlap, overlap, "overlap"),
        catch_up=_choice(CatchUp, catch_up, "catch_up"),
    )


def _check_text(what: str, text: str) -> None:
    reason = text_problem(text)
    if reason:
        raise InvalidSchedule(f"the schedule's {what} {reason}")


def _choice(enum: Any, value: str, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise InvalidSchedule(f"{what} {value!r} is not one of {allowed}") from None
