"""Log lines: the JSON and text formats, the one logging configuration every command uses,
and the fields that name a job in a line (its id, type, queue, attempt and worker).

Pure but for what ``logging`` itself does: the caller says whether stderr is a terminal.
"""

from __future__ import annotations

import asyncio
import json
import json.encoder
import logging
import logging.config
import sys
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_text
from typing import Any, Literal

from conveyor.core.payloads import text_masker

Format = Literal["json", "text"]

#: The fields of every line about one job (``extra=`` on the record, keys in JSON).
JOB_FIELDS = ("job_id", "job_type", "queue", "attempt", "worker_id")
#: How a line about a job names it in its message, so text lines carry the fields too.
JOB_LABEL = "job %s (%s, queue %s, attempt %d, worker %s)"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message", "asctime", "taskName", "color_message",  # uvicorn's colored twin of message
}  # fmt: skip


def job_fields(
    job_id: str, job_type: str, queue: str, attempt: int, worker_id: str
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "job_type": job_type,
        "queue": queue,
        "attempt": attempt,
        "worker_id": worker_id,
    }


def job_label(fields: Mapping[str, Any]) -> str:
    """``JOB_LABEL`` filled in from a record's job fields."""
    f = fields
    return JOB_LABEL % (f["job_id"], f["job_type"], f["queue"], f["attempt"], f["worker_id"])


class JobFields:
    """The fields every line about one attempt repeats (``job_fields``), its label, and what
    a JSON line makes of them — encoded once for all the attempt's lines."""

    __slots__ = ("fields", "label", "json")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.label = job_label(fields)
        self.json: str | None = None


def log_job(
    logger: logging.Logger,
    level: int,
    event: str,
    text: str,
    *,
    job_id: str,
    job_type: str,
    queue: str,
    attempt: int,
    worker_id: str = "-",
    **more: Any,
) -> None:
    """One line about one job outside a worker's run of it (an enqueue, a cancel or retry
    by request, a schedule's fire): the job's fields and ``event``, as the worker's lines."""
    if not logger.isEnabledFor(level):
        return
    fields = job_fields(job_id, job_type, queue, attempt, worker_id) | {"event": event, **more}
    logger.log(level, f"{job_label(fields)} {text}", extra=fields)


def rfc3339(created: float) -> str:
    """A record's time as RFC 3339 in UTC with milliseconds: ``2025-01-31T09:15:02.123Z``."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, every ``extra=`` field, and
    ``exception`` when the record carries one (a job's ``traceback`` is a field of its own).

    A busy worker writes a line per job, so this is on the hot path: the timestamp's second
    is formatted once per second, and the encoder is made once."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""
        self._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
        self._flat = _reused_encoder(str)

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, rfc3339(second)[:-4]  # "...T09:15:02."
        return f"{self._prefix}{int((created - second) * 1000):03d}Z"

    def line(
        self,
        level: int,
        logger: str,
        message: str,
        fields: Mapping[str, Any],
        job: JobFields | None = None,
    ) -> str:
        """What ``format`` makes of a record of these (``job``'s fields first), without the
        record (``LineHandler``)."""
        head = (
            f'{{"timestamp": "{self._timestamp(time.time())}", '
            f'"level": {_json_text(logging.getLevelName(level))}, "logger": {_json_text(logger)}, '
            f'"message": {_json_text(message)}'
        )
        if job is not None:
            if job.json is None:
                job.json = self._flat(job.fields)[1:-1]
            head = f"{head}, {job.json}"
        return f"{head}, {self._flat(fields)[1:]}" if fields else head + "}"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return self._encode(line)


def _reused_encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    """``JSONEncoder(ensure_ascii=False, default=default).encode`` without making a new C
    encoder at every call, as ``encode`` does (a third of its time for a log line). Without
    the check for circular references: for the flat fields of a job's line only."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator in this Python
        return json.JSONEncoder(ensure_ascii=False, default=default).encode
    chunks = make(None, default, _json_text, None, ": ", ", ", False, False, True)
    return lambda value: "".join(chunks(value, 0))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, then a job's ``traceback`` field when it has one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._asctime = ""

    def line(
        self,
        level: int,
        logger: str,
        message: str,
        fields: Mapping[str, Any],
        job: JobFields | None = None,
    ) -> str:
        """What ``format`` makes of a record of these, without the record (``LineHandler``);
        a job's fields show in its message already."""
        created = time.time()
        second = int(created)
        if second != self._second:  # formatTime's default, once a second
            self._second = second
            self._asctime = time.strftime(self.default_time_format, self.converter(second))
        asctime = f"{self._asctime},{int((created - second) * 1000):03d}"  # default_msec_format
        text = f"{asctime} {logging.getLevelName(level)} {logger}: {message}"
        traceback = fields.get("traceback")
        return f"{text}\n{traceback.rstrip()}" if traceback else text

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        traceback = getattr(record, "traceback", None)
        return f"{text}\n{traceback.rstrip()}" if traceback else text


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Conveyor's stderr handler. Besides records it takes a worker's per-job lines
    (``worker.joblog``) formatted without a ``LogRecord`` and written together at the end of
    the event loop's turn: a busy worker writes two lines per job, and a record's making,
    locking and write cost several times the line itself.

    It takes lines only for a logger whose records would reach this handler alone, unfiltered
    (``takes``): where anything else listens — a handler or filter the application added —
    lines go through ``logging`` as records. Buffered lines are written before any record, so
    the order within a thread holds."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._direct: dict[str, bool] = {}  # logger name -> whether its lines may come here

    def takes(self, logger: logging.Logger) -> bool:
        """Whether ``logger``'s lines may bypass ``logging``: its records would reach this
        handler alone, with no filter on the way (looked at once per logger, and again at
        each write of buffered lines)."""
        direct = self._direct.get(logger.name)
        if direct is None:
            direct = self._direct[logger.name] = self._only_me(logger)
        return direct

    def _only_me(self, logger: logging.Logger) -> bool:
        if self.filters or not isinstance(self.formatter, JsonFormatter | TextFormatter):
            return False
        current = logger
        while current.parent is not None:  # below the root: nothing may listen or filter
            if current.filters or current.disabled or current.handlers or not current.propagate:
                return False
            current = current.parent
        return current.handlers == [self] and not current.filters

    def add(
        self,
        level: int,
        logger: str,
        message: str,
        fields: Mapping[str, Any],
        job: JobFields | None = None,
    ) -> None:
        """Buffer one line (``job``'s fields first, then ``fields``); written at the end of
        the event loop's turn (at once outside a loop, or when a record is emitted first)."""
        if level < self.level:
            return
        line = self.formatter.line(level, logger, message, fields, job)  # type: ignore[union-attr]
        if self._lines:
            self._lines.append(line)
            return
        self._lines.append(line)
        try:
            asyncio.get_running_loop().call_soon(self.write_lines)
        except RuntimeError:
            self.write_lines()

    def write_lines(self) -> None:
        self._direct.clear()  # handlers and filters may have changed since: look again
        if not self._lines:
            return
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            try:
                self.stream.write(self.terminator.join(lines) + self.terminator)
                self.flush()
            except Exception:  # as a record's failed write: report, carry on
                self.handleError(logging.makeLogRecord({"msg": lines[0]}))

    def emit(self, record: logging.LogRecord) -> None:
        if self._lines:
            self.write_lines()
        super().emit(record)

    def close(self) -> None:
        self.write_lines()
        super().close()


def line_handler() -> LineHandler | None:
    """The process's ``LineHandler``, when ``configure_logging`` installed one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LineHandler):
            return handler
    return None


def resolve_format(setting: str, *, tty: bool) -> Format:
    """``CONVEYOR_LOG_FORMAT`` made concrete: ``auto`` is text for a person at a terminal,
    JSON for whatever collects the output of a service."""
    if setting == "auto":
        return "text" if tty else "json"
    return "json" if setting == "json" else "text"


def logging_config(log_format: Format, level: str) -> dict[str, Any]:
    """The ``dictConfig`` of every Conveyor process, uvicorn's included (``conveyor api``
    hands it to uvicorn, which applies it in each of its worker processes too)."""
    formatter = "JsonFormatter" if log_format == "json" else "TextFormatter"
    quiet = "WARNING" if level != "DEBUG" else "DEBUG"
    return {
        "version": 1,
        "disable_existing_loggers": False,  # module loggers made at import keep working
        "formatters": {"conveyor": {"()": f"{__name__}.{formatter}"}},
        "handlers": {
            "stderr": {
                "class": f"{__name__}.LineHandler",
                "formatter": "conveyor",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers off: its lines reach the root handler, in our format.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            "alembic": {"level": quiet},  # one line per migration step otherwise
        },
    }


def configure_logging(log_format: Format, level: str) -> None:
    """Set up the process's logging (the only place it is done)."""
    logging.config.dictConfig(logging_config(log_format, level))


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.logger``: its records carry the job's fields and name the job in their message;
    the payload's secret values are masked in the message and in a logged exception."""

    def __init__(
        self,
        logger: logging.Logger,
        fields: dict[str, Any],
        payload: Any = None,
        secret_fields: Iterable[str] = (),
    ) -> None:
        super().__init__(logger, fields)
        self._label = job_label(fields)
        self._payload = payload
        self._secret_fields = secret_fields
        self._hide: Callable[[str], str] | None | bool = False  # False: not looked for yet

    def _masker(self) -> Callable[[str], str] | None:
        if self._hide is False:
            self._hide = text_masker(self._payload, self._secret_fields)
        return self._hide if callable(self._hide) else None

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return f"{self._label}: {msg}", kwargs

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        hide = self._masker()
        if hide is not None:  # rendered now, so the secret never reaches a handler
            msg = hide(str(msg) % args if args else str(msg))
            args = ()
            exc_info = kwargs.pop("exc_info", None)
            if exc_info:
                text = logging.Formatter().formatException(_exc_info(exc_info))
                kwargs["extra"] = {**(kwargs.get("extra") or {}), "traceback": hide(text)}
        msg, kwargs = self.process(msg, kwargs)
        self.logger.log(level, msg, *args, **kwargs)


def _exc_info(value: Any) -> Any:
    """``exc_info=`` as logging takes it, made a (type, value, traceback) triple."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value
    return sys.exc_info()
