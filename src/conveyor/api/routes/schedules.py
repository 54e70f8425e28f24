"""/schedules: periodic jobs, from code or defined at run time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import ConveyorDep, require_json
from conveyor.api.schemas import ErrorBody
from conveyor.api.views import masked
from conveyor.core.periodic import define
from conveyor.scheduler import Scheduler, shared_scheduler

router = APIRouter(
    prefix="/schedules",
    tags=["schedules"],
    responses={c: {"model": ErrorBody} for c in (400, 401, 404, 409, 415, 422, 503)},
)


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200, description="A registered job type.")
    payload: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = Field(None, max_length=200, description="5-field cron or @hourly etc.")
    every: float | str | None = Field(None, description="Interval: seconds or e.g. '90s'.")
    tz: str = Field("UTC", max_length=64, description="IANA time zone of the cron spec.")
    queue: str | None = Field(None, min_length=1, max_length=200)
    overlap: str = Field("allow", description="allow, skip or cancel_previous")
    catch_up: str = Field("latest", description="latest, all or none")


class ScheduleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] | None = None
    cron: str | None = Field(None, max_length=200)
    every: float | str | None = None
    tz: str | None = Field(None, max_length=64)
    queue: str | None = Field(None, min_length=1, max_length=200)
    overlap: str | None = None
    catch_up: str | None = None
    paused: bool | None = None


class FirePublic(BaseModel):
    tick_at: datetime
    outcome: str
    job_id: str | None
    job_state: str | None


class SchedulePublic(BaseModel):
    name: str
    type: str
    payload: dict[str, Any]
    cron: str | None
    every_s: float | None
    tz: str
    queue: str | None
    overlap: str
    catch_up: str
    paused: bool
    source: str
    enabled: bool
    next_fire_at: datetime | None
    last_tick_at: datetime | None
    last_fire: FirePublic | None
    fires: list[FirePublic] | None = None


class Triggered(BaseModel):
    outcome: str
    job_id: str | None


def get_scheduler(request: Request) -> Scheduler:
    return shared_scheduler(request.app.state, request.app.state.conveyor)


SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]


def _public(s: Scheduler, row: dict[str, Any], fires: int) -> SchedulePublic:
    recent = s.store.fires(row["name"], limit=max(fires, 1))
    return SchedulePublic(
        name=row["name"],
        type=row["job_type"],
        payload=masked(s.client.registry, row["job_type"], row["payload"]),
        cron=row["cron"],
        every_s=row["every_s"],
        tz=row["tz"],
        queue=row["queue"],
        overlap=row["overlap"],
        catch_up=row["catch_up"],
        paused=row["paused"],
        source=row["source"],
        enabled=row["enabled"],
        next_fire_at=row["next_tick_at"],
        last_tick_at=row["last_tick_at"],
        last_fire=FirePublic(**recent[0]) if recent else None,
        fires=[FirePublic(**f) for f in recent] if fires else None,
    )


@router.get("", response_model=list[SchedulePublic])
def list_schedules(s: SchedulerDep) -> list[SchedulePublic]:
    """Every schedule: spec, next fire, last fire and its outcome, paused or not."""
    return [_public(s, row, 0) for row in s.store.all()]


@router.get("/{name}", response_model=SchedulePublic)
def get_schedule(name: str, s: SchedulerDep) -> SchedulePublic:
    """A schedule with its latest fires, their job ids and the jobs' states."""
    return _public(s, s.store.get(name), 20)


@router.post(
    "", status_code=201, response_model=SchedulePublic, dependencies=[Depends(require_json)]
)
def create_schedule(
    body: ScheduleCreate,
    response: Response,
    request: Request,
    conveyor: ConveyorDep,
    s: SchedulerDep,
) -> SchedulePublic:
    """Define a schedule at run time; checked like one defined in code."""
    definition = define(
        conveyor.registry, body.name, body.type, cron=body.cron, every=body.every, tz=body.tz,
        payload=body.payload, queue=body.queue, overlap=body.overlap, catch_up=body.catch_up,
    )  # fmt: skip
    s.store.create(definition.as_row(), s.store.db_now())
    # Percent-encoded: a header is Latin-1, and a name may hold any character, "/" included.
    name = quote(body.name, safe="")
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/schedules/{name}"
    return _public(s, s.store.get(body.name), 0)


@router.patch("/{name}", response_model=SchedulePublic, dependencies=[Depends(require_json)])
def update_schedule(
    name: str, body: ScheduleUpdate, conveyor: ConveyorDep, s: SchedulerDep
) -> SchedulePublic:
    """Change a run-time schedule (any schedule may be paused or resumed)."""
    row = s.store.get(name)
    changes = body.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    if "paused" in changes and changes["paused"] is not None:
        values["paused"] = changes.pop("paused")
    changes.pop("paused", None)
    if changes:
        every = changes.get("every", row["every_s"] if "cron" not in changes else None)
        cron = changes.get("cron", row["cron"] if "every" not in changes else None)
        definition = define(
            conveyor.registry, name, row["job_type"], cron=cron, every=every,
            tz=changes.get("tz") or row["tz"], payload=changes.get("payload", row["payload"]),
            queue=changes.get("queue", row["queue"]),
            overlap=changes.get("overlap") or row["overlap"],
            catch_up=changes.get("catch_up") or row["catch_up"],
        )  # fmt: skip
        spec = definition.as_row()
        spec.pop("name")
        values.update({k: v for k, v in spec.items() if v != row[k]})
    if values:
        s.store.change(name, values, s.store.db_now())
    return _public(s, s.store.get(name), 0)


@router.delete("/{name}", status_code=204)
def delete_schedule(name: str, s: SchedulerDep) -> Response:
    """Delete a run-time schedule and its history."""
    s.store.delete(name)
    return Response(status_code=204)


@router.post("/{name}/pause", response_model=SchedulePublic)
def pause_schedule(name: str, s: SchedulerDep) -> SchedulePublic:
    s.store.change(name, {"paused": True}, s.store.db_now())
    return _public(s, s.store.get(name), 0)


@router.post("/{name}/resume", response_model=SchedulePublic)
def resume_schedule(name: str, s: SchedulerDep) -> SchedulePublic:
    s.store.change(name, {"paused": False}, s.store.db_now())
    return _public(s, s.store.get(name), 0)


@router.post("/{name}/trigger", status_code=202, response_model=Triggered)
def trigger_schedule(name: str, s: SchedulerDep) -> Triggered:
    """Fire now, outside the spec (the overlap policy still applies)."""
    fired = s.trigger(name)
    return Triggered(outcome=fired.outcome, job_id=fired.job_id)
