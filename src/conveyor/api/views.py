"""Turning job views into response bodies: links and secret masking in one place."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from conveyor.api.schemas import JobAccepted, JobPublic, Links
from conveyor.app import Conveyor
from conveyor.core.registry import Registry
from conveyor.core.states import State
from conveyor.core.views import JobView


def _link_paths(request: Request, job_id: str) -> dict[str, str]:
    base = f"{request.scope.get('root_path', '')}/jobs/{job_id}"
    return {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"}


def links(request: Request, job_id: str) -> Links:
    return Links(**_link_paths(request, job_id))


def masked(registry: Registry, job_type: str, value: Any) -> Any:
    """A payload (a schedule's, say) with its job type's secret fields masked."""
    return registry.masked_payload(job_type, value)


def shown(conveyor: Conveyor, view: JobView) -> JobView:
    """The job as it may be served: its secrets masked by name and by value."""
    return conveyor.registry.shown(view)


def job_public(
    request: Request, conveyor: Conveyor, view: JobView, *, with_attempts: bool = True
) -> JobPublic:
    view = shown(conveyor, view)
    return JobPublic.of(
        view,
        links(request, view.id),
        payload=view.payload,
        result=view.result,
        with_attempts=with_attempts,
    )


def accepted(request: Request, job_id: str, state: State, created: bool) -> JobAccepted:
    return JobAccepted(id=job_id, state=state, created=created, links=links(request, job_id))


def accepted_dict(request: Request, job_id: str, state: State, created: bool) -> dict[str, Any]:
    """``accepted`` as the plain dict it serialises to, for values that come from the store."""
    paths = _link_paths(request, job_id)
    return {"id": job_id, "state": state.value, "created": created, "links": paths}
