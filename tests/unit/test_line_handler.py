"""Per-job lines written without a LogRecord (``core.logs.LineHandler``): the same text as
the record's, in order with records, and through ``logging`` whenever anything else listens."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from conveyor.core.logs import LineHandler, configure_logging, line_handler
from conveyor.store import ClaimedJob
from conveyor.worker import joblog

FIELDS = {
    "job_id": "0190a5a0-0000-7000-8000-000000000001",
    "job_type": "crawl_store",
    "queue": "défaut",
    "attempt": 2,
    "worker_id": "host-1-w",
    "event": "completed",
    "duration_s": 0.012345,
    "ratio": float("nan"),  # not JSON's: the encoder's own spelling
    "flag": True,
    "nothing": None,
    "when": datetime(2026, 1, 2, tzinfo=UTC),  # default=str
}


@pytest.fixture
def handler() -> Iterator[tuple[LineHandler, io.StringIO]]:
    configure_logging("json", "INFO")
    found = line_handler()
    assert found is not None
    stream = io.StringIO()
    found.setStream(stream)
    yield found, stream
    logging.getLogger().handlers.clear()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Only Conveyor's handler on the root logger (pytest adds its capturing handler to it
    during each test, which rightly sends lines through ``logging``)."""
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, LineHandler)]
    for other in others:
        root.removeHandler(other)
    try:
        yield
    finally:
        for other in others:
            root.addHandler(other)


def _records_and_lines(fmt: str, stream: io.StringIO, lines: LineHandler) -> tuple[str, str]:
    with alone():
        return _both(stream, lines)


def _both(stream: io.StringIO, lines: LineHandler) -> tuple[str, str]:
    log = logging.getLogger("conveyor.worker")
    message = 'job x "quoted" ünïcode\ttab'
    log.info(message, extra=FIELDS)
    assert lines.takes(log)
    lines.add(logging.INFO, log.name, message, FIELDS)
    lines.write_lines()
    record_line, direct_line = stream.getvalue().splitlines()
    return record_line, direct_line


def test_a_direct_json_line_is_the_records_line(
    handler: tuple[LineHandler, io.StringIO],
) -> None:
    lines, stream = handler
    record_line, direct_line = _records_and_lines("json", stream, lines)
    record, direct = json.loads(record_line), json.loads(direct_line)
    assert record.pop("timestamp")[:16] == direct.pop("timestamp")[:16]
    assert list(record) == list(direct)
    assert record_line.split('"level"', 1)[1] == direct_line.split('"level"', 1)[1]  # bytes


def test_a_direct_text_line_is_the_records_line() -> None:
    configure_logging("text", "INFO")
    lines = line_handler()
    assert lines is not None
    stream = io.StringIO()
    lines.setStream(stream)
    try:
        record_line, direct_line = _records_and_lines("text", stream, lines)
    finally:
        logging.getLogger().handlers.clear()
    assert record_line[:19] == direct_line[:19]  # the same second, as formatTime spells it
    assert record_line[23:] == direct_line[23:]  # past the milliseconds: identical


def test_buffered_lines_are_written_before_a_later_record(
    handler: tuple[LineHandler, io.StringIO],
) -> None:
    lines, stream = handler
    log = logging.getLogger("conveyor.worker")

    async def turn() -> list[str]:
        lines.add(logging.INFO, log.name, "first", {})
        lines.add(logging.INFO, log.name, "second", {})
        written_before = stream.getvalue()
        log.warning("third")  # a record: the buffered lines go first
        await asyncio.sleep(0)
        return [written_before, stream.getvalue()]

    before, after = asyncio.run(turn())
    assert before == ""  # held to the end of the loop's turn
    assert [json.loads(line)["message"] for line in after.splitlines()] == [
        "first",
        "second",
        "third",
    ]


def test_lines_go_through_logging_when_the_application_listens(
    handler: tuple[LineHandler, io.StringIO],
) -> None:
    lines, stream = handler
    heard: list[logging.LogRecord] = []

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record)

    listener = Listener()
    conveyor_log = logging.getLogger("conveyor")
    joblog.use_line_handler()
    stack = contextlib.ExitStack()
    stack.enter_context(alone())
    job = ClaimedJob(
        id="j1", type="t", queue="q", payload={}, attempt=1, charged=1, max_attempts=1,
        timeout_s=None, started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    joblog.started(job, "w")
    lines.write_lines()
    assert heard == [] and json.loads(stream.getvalue())["event"] == "started"  # direct
    conveyor_log.addHandler(listener)
    try:
        lines.write_lines()  # each write looks at the chain again
        joblog.started(job, "w")
        assert [r.__dict__["event"] for r in heard] == ["started"]  # a record, with fields
        assert stream.getvalue().count('"started"') == 2  # and still on stderr
    finally:
        conveyor_log.removeHandler(listener)
        stack.close()
        joblog.use_line_handler()


def test_a_filter_on_the_handler_sends_lines_through_logging(
    handler: tuple[LineHandler, io.StringIO],
) -> None:
    lines, stream = handler
    lines.addFilter(lambda record: "secret" not in record.getMessage())
    log = logging.getLogger("conveyor.worker")
    with alone():
        assert not lines.takes(log)
        lines.filters.clear()
        lines.write_lines()  # each write looks at the chain again
        assert lines.takes(log)


def test_a_jobs_lines_are_the_same_direct_or_as_records(
    handler: tuple[LineHandler, io.StringIO],
) -> None:
    """The fields a job's lines repeat are encoded once per attempt (``JobFields``): its
    started and ended lines read the same as the records ``logging`` would have made."""
    from datetime import timedelta

    from conveyor.core.outcome import AttemptOutcome
    from conveyor.core.registry import Registry
    from conveyor.core.states import State
    from conveyor.store import Finish

    lines, stream = handler
    start = datetime(2026, 1, 1, tzinfo=UTC)
    job = ClaimedJob(
        id="j1", type="t", queue="q", payload={}, attempt=2, charged=2, max_attempts=3,
        timeout_s=None, started_at=start,
    )  # fmt: skip
    finish = Finish(
        job_id="j1", attempt=2, state=State.COMPLETED, outcome=AttemptOutcome.COMPLETED,
        worker_id="w", started_at=start, finished_at=start + timedelta(seconds=0.25),
    )  # fmt: skip

    def both() -> list[dict[str, object]]:
        joblog.started(job, "w")
        joblog.ended(job, finish, Registry())
        lines.write_lines()
        found = [json.loads(line) for line in stream.getvalue().splitlines()]
        stream.seek(0)
        stream.truncate()
        for line in found:
            line.pop("timestamp")
        return found

    joblog.use_line_handler()
    with alone():
        direct = both()
    heard: list[logging.LogRecord] = []

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record)

    listener = Listener()
    logging.getLogger("conveyor").addHandler(listener)
    try:
        with alone():
            lines.write_lines()
            as_records = both()
    finally:
        logging.getLogger("conveyor").removeHandler(listener)
    assert len(heard) == 2  # the second time through logging
    assert direct == as_records
    assert [list(line) for line in direct] == [list(line) for line in as_records]
    assert direct[1]["event"] == "completed" and direct[1]["attempt"] == 2
    assert direct[1]["message"].endswith("completed in 0.250 s")
