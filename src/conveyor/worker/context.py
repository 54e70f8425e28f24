"""What a handler gets as ``ctx``: its job's identity, progress reporting and cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.core.errors import JobCanceled
from conveyor.core.logs import JobLogger, job_fields
from conveyor.core.storable import text_problem
from conveyor.store import ClaimedJob

log = logging.getLogger("conveyor.job")

#: The longest progress message and stage name a handler may report (characters).
MESSAGE_LIMIT = 4096
STAGE_LIMIT = 200


class _Done:
    """An already-finished awaitable: ``ctx`` calls work with and without ``await``."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_DONE = _Done()


class Progress:
    """A job's latest progress, written by the handler and flushed in batches by the worker."""

    __slots__ = ("progress", "stage", "message", "dirty")

    def __init__(self, progress: float | None, stage: str | None) -> None:
        self.progress = progress
        self.stage = stage
        self.message: str | None = None
        self.dirty = False


class Context:
    """Passed to every handler as its first argument."""

    def __init__(
        self,
        *,
        job_id: str,
        job_type: str,
        queue: str,
        attempt: int,
        stages: Sequence[str],
        progress: Progress,
        on_dirty: Any = None,
        worker_id: str = "",
        payload: Any = None,
        secret_fields: Iterable[str] = (),
    ) -> None:
        """``worker_id``, ``payload`` and ``secret_fields`` serve ``logger`` only: its lines
        name the worker, and the payload's secret values are masked in them."""
        self.job_id = job_id
        self.job_type = job_type
        self.queue = queue
        self.attempt = attempt
        self.stages = tuple(stages)
        self._progress = progress
        self._on_dirty = on_dirty
        # A plain flag: set once by the worker, read by the handler (also from a thread).
        self._cancelled = False
        self.cancel_reason: str | None = None
        # True while a worker thread runs this (sync) handler, set by that thread.
        self.in_thread = False
        self.worker_id = worker_id
        self._payload = payload
        self._secret_fields = secret_fields
        self._logger: JobLogger | None = None

    @property
    def logger(self) -> JobLogger:
        """A logger whose lines carry the job's id, type, queue, attempt and worker, like
        the worker's own lines about the job (made on first use: most handlers never log)."""
        if self._logger is None:
            fields = job_fields(
                self.job_id, self.job_type, self.queue, self.attempt, self.worker_id
            )
            self._logger = JobLogger(log, fields, self._payload, self._secret_fields)
        return self._logger

    @property
    def cancelled(self) -> bool:
        """True once the job was canceled, timed out or its worker is shutting down."""
        return self._cancelled

    def _cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._cancelled = True

    def check(self) -> _Done:
        """Raise JobCanceled if the job should stop; a cheap call for long loops."""
        if self._cancelled:
            raise JobCanceled(self.cancel_reason or "canceled")
        return _DONE

    def progress(
        self, pct: float | None = None, *, stage: str | None = None, message: str | None = None
    ) -> _Done:
        """Report the job's progress (0-100 of the whole job, never going back within an
        attempt), stage and message.

        With declared stages, stage ``i`` of ``n`` owns the share from ``100*i/n`` to
        ``100*(i+1)/n``: entering it raises progress to its start, and a report inside it is
        capped at its end (a stage cannot claim the next one's share). Use
        ``stage_progress`` to report a percentage of the current stage instead."""
        self.check()
        state = self._progress
        if pct is not None and (
            isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100
        ):
            raise ValueError(f"progress must be a number from 0 to 100, got {pct!r}")
        if message is not None:  # checked before anything changes: a bad call changes nothing
            message = _storable("progress message", str(message), MESSAGE_LIMIT)
        if stage is not None:
            self._set_stage(stage)
        if pct is not None:
            state.progress = max(min(float(pct), self._stage_end()), state.progress or 0.0)
        if message is not None:
            state.message = message
        self._mark()
        return _DONE

    def stage(self, name: str, *, message: str | None = None) -> _Done:
        """Enter a named stage; with a declared stage list, progress follows from it. A
        stage's message belongs to it: entering another stage clears it."""
        return self.progress(stage=name, message=message)

    def stage_progress(self, pct: float, *, message: str | None = None) -> _Done:
        """Report ``pct`` (0-100) of the current declared stage: stage ``i`` of ``n`` at
        ``pct`` is ``100*(i + pct/100)/n`` of the job."""
        state = self._progress
        if not self.stages or state.stage not in self.stages:
            raise ValueError("stage_progress needs a current stage from the declared stages")
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
            raise ValueError(f"stage progress must be a number from 0 to 100, got {pct!r}")
        index = self.stages.index(state.stage)
        return self.progress(100.0 * (index + pct / 100.0) / len(self.stages), message=message)

    def _stage_end(self) -> float:
        """Where the current declared stage's share ends (100 without declared stages)."""
        stage = self._progress.stage
        if not self.stages or stage not in self.stages:
            return 100.0
        return 100.0 * (self.stages.index(stage) + 1) / len(self.stages)

    def _set_stage(self, name: str) -> None:
        state = self._progress
        name = _storable("stage", name, STAGE_LIMIT)
        if self.stages:
            if name not in self.stages:
                raise ValueError(
                    f"unknown stage {name!r} for job type {self.job_type!r}; "
                    f"declared stages: {', '.join(self.stages)}"
                )
            derived = 100.0 * self.stages.index(name) / len(self.stages)
            state.progress = max(derived, state.progress or 0.0)
        if name != state.stage:
            state.message = None  # the last stage's message does not describe this one
        state.stage = name

    def _mark(self) -> None:
        self._progress.dirty = True
        if self._on_dirty is not None:
            self._on_dirty(self.job_id)


def _storable(what: str, text: str, limit: int) -> str:
    """``text`` if it can be stored; ValueError naming the problem (raised in the handler,
    at the call, instead of failing the worker's write later)."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    reason = text_problem(text)
    if reason is not None:
        raise ValueError(f"{what} {reason}")
    if len(text) > limit:
        raise ValueError(f"{what} is {len(text)} characters, over the limit of {limit}")
    return text


@dataclass
class Run:
    """One running attempt in a worker: its job, its ``ctx``, its progress, its task."""

    job: ClaimedJob
    ctx: Context
    progress: Progress
    task: asyncio.Task[None] | None = None
