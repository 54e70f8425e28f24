"""Property-based tests at the storage boundary (issue 13): arbitrary JSON-ish values — NULs,
lone surrogates, NaN and Infinity, huge numbers, very long strings, nesting past MAX_DEPTH —
as payloads, results, error messages and progress messages, on PostgreSQL and SQLite.

A payload is stored exactly or refused with InvalidPayload and nothing written. Through a
real worker, every job ends, in the state the storability check (``storable.problems``)
predicts, and a job enqueued after it still runs promptly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from conveyor import Conveyor, State
from conveyor.api import create_app
from conveyor.core.errors import InvalidPayload, WaitTimeout
from conveyor.core.outcome import ERROR_MESSAGE_LIMIT
from conveyor.core.payloads import mask_secrets
from conveyor.core.storable import MAX_DEPTH, clean_text, problems, text_problem
from conveyor.core.views import JobView
from conveyor.store import make_engine
from conveyor.store.tables import jobs as jobs_table
from conveyor.worker.context import MESSAGE_LIMIT
from tests.apps.jobs import text_in
from tests.conftest import Backend, WorkerProcess

#: How long a job may take to end, and a neighbour enqueued after it to complete (s).
END_WITHIN_S = 15.0

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI must not flake
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the backend is shared by the examples on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
#: Through a worker, one example's failure (a wedged worker) fails every later one: shrinking
#: would only wait out timeouts, so the first failing example is reported as found.
WORKER_EXAMPLES = settings(EXAMPLES, phases=[Phase.explicit, Phase.generate])

# -- values -----------------------------------------------------------------------------------

_NASTY_TEXT = [
    "\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d\ude00",  # NUL; lone surrogates (a "pair" too)
    "\\u0000", "\\ud800",  # escapes typed as text: storable
    "", "null", "{[", "\u2028\u2029", "\ufeff", "\U0010ffff", "é😀",
]  # fmt: skip
_NUMBERS = [
    10**30, -(10**30), 2**63, 2**64, -(2**63) - 1, 10**400,  # beyond 64 bits and any float
    1e308, -1e308, 1.7976931348623157e308, 5e-324, -0.0, 0.1,
    math.nan, math.inf, -math.inf,
]  # fmt: skip

texts = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
    st.sampled_from(_NASTY_TEXT),
    st.builds(  # very long strings, sometimes with one bad character in them
        lambda fill, n, bad: fill * n + bad,
        st.sampled_from(["x", "é", "{", "\\"]),
        st.integers(1_000, 12_000),
        st.sampled_from(["", "", "\x00", "\ud800"]),
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(_NUMBERS),
    st.floats(),  # NaN and the infinities included
    texts,
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)


@st.composite
def _nested(draw: st.DrawFn, inner: st.SearchStrategy[Any]) -> Any:
    """``inner`` wrapped in a chain of lists and dicts up to ~80 deep, often right at the
    limit (``recursive`` alone seldom goes past a few levels)."""
    depth = draw(
        st.one_of(
            st.integers(1, 80),
            st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1]),
        )
    )
    value = draw(inner)
    key = draw(st.sampled_from(["k", ""]))  # (bad keys come from ``texts`` in the inner value)
    for kind in draw(st.lists(st.sampled_from("ld"), min_size=depth, max_size=depth)):
        value = [value] if kind == "l" else {key: value}
    return value


#: At most 8 leaves of at most 12,001 characters: under the 1 MiB payload and result limits
#: even JSON-escaped (6 bytes a character), so that size is never why a value is refused.
shallow = st.recursive(scalars, _containers, max_leaves=8)
deep = st.one_of(_nested(shallow), _containers(_nested(scalars)))
values = st.sampled_from([shallow, shallow, deep]).flatmap(lambda chosen: chosen)


def _chain(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


#: Tried first on every run, whatever the generated examples turn out to be.
_EXPLICIT = [
    math.nan, [math.inf], {"v": -math.inf}, 1e308, 10**30, [2**64, -(2**63) - 1],
    "a\x00b", {"k\ud800": 1}, "\\u0000", "x" * 12_000, "\ud800" * 5_000,
    _chain(MAX_DEPTH - 1), _chain(MAX_DEPTH), _chain(MAX_DEPTH + 1), _chain(80),
]  # fmt: skip


def with_explicit_examples(test: Callable[..., None]) -> Callable[..., None]:
    for value in reversed(_EXPLICIT):
        test = example(value=value)(test)
    return test


# -- helpers ----------------------------------------------------------------------------------


def same_json(sent: Any, got: Any) -> bool:
    """Whether ``got`` is the JSON value ``sent``: numbers compare as the decimals they are
    written as (PostgreSQL's jsonb keeps the number, not Python's int/float distinction:
    1e308 comes back as the integer 10**308)."""
    if isinstance(sent, bool) or isinstance(got, bool):
        return sent is got
    if isinstance(sent, int | float) and isinstance(got, int | float):
        return Decimal(repr(sent)) == Decimal(repr(got))
    if isinstance(sent, list) and isinstance(got, list):
        return len(sent) == len(got) and all(map(same_json, sent, got))
    if isinstance(sent, dict) and isinstance(got, dict):
        return sent.keys() == got.keys() and all(same_json(v, got[k]) for k, v in sent.items())
    return type(sent) is type(got) and sent == got


def shown(value: Any, limit: int = 300) -> str:
    """``value`` for an assertion message: ASCII, cut short."""
    try:
        text = ascii(value)
    except ValueError:  # holds an int of more digits than Python converts to text
        text = f"<a {type(value).__name__} holding an int too long to print>"
    return text if len(text) <= limit else text[:limit] + "..."


def encoded(value: Any) -> str:
    """``value`` as a storable JSON string: NUL, surrogates and NaN survive as escapes."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def count_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs_table)).scalar_one())


@pytest.fixture
def http(db_backend: Backend) -> Iterator[TestClient]:
    with TestClient(create_app(db_backend.app()), raise_server_exceptions=False) as client:
        yield client


# -- payloads ---------------------------------------------------------------------------------


def test_payloads_are_stored_exactly_or_refused_with_nothing_written(
    db_backend: Backend, http: TestClient
) -> None:
    app = db_backend.app()
    engine = make_engine(db_backend.database_url)

    @settings(EXAMPLES, max_examples=50)
    @with_explicit_examples
    @given(value=values)
    def check(value: Any) -> None:
        payload = {"value": value}
        expected = problems(payload)
        before = count_jobs(engine)
        try:
            handle = app.enqueue("value_echo", payload)
        except InvalidPayload as exc:
            assert expected, f"a storable payload was refused: {exc.errors} for {shown(value)}"
            assert {e["field"] for e in exc.errors} == {p["field"] for p in expected}, exc.errors
            assert count_jobs(engine) == before, "a refused payload left a row behind"
            return
        assert not expected, f"an unstorable payload was accepted: {expected}"
        view = app.get(handle.id)
        assert same_json(payload, view.payload), shown(view.payload)
        listed = {v.id: v for v in app.list(type="value_echo", limit=1000).items}
        assert handle.id in listed and same_json(payload, listed[handle.id].payload)
        one = http.get(f"/jobs/{handle.id}")
        assert one.status_code == 200, one.text[:2000]
        assert same_json(mask_secrets(payload), one.json()["payload"])
        page = http.get("/jobs", params={"type": "value_echo", "limit": 1000})
        assert page.status_code == 200, page.text[:2000]

    try:
        check()
    finally:
        engine.dispose()


def test_an_int_too_long_for_json_is_refused_naming_its_field(db_backend: Backend) -> None:
    """Python writes no int of more than 4,300 digits as text (``sys.int_info``): such a
    payload cannot be JSON here, and ``problems`` (the one check) must say so, by field."""
    payload = {"value": {"n": 10**4300}}
    with pytest.raises(InvalidPayload) as refused:
        db_backend.app().enqueue("value_echo", payload)
    assert [e["field"] for e in refused.value.errors] == ["value.n"]
    assert [p["field"] for p in problems(payload)] == ["value.n"]


# -- results, errors and progress through a worker --------------------------------------------


def _through_worker(
    backend: Backend, http: TestClient, job_type: str, expect: Callable[[Any, JobView], None]
) -> None:
    """Run ``job_type`` on each example's encoded value in one worker; ``expect`` checks the
    ended job, which the API must still serve; a neighbour enqueued after it must complete
    promptly every time."""
    app = backend.app()
    worker = backend.worker("--concurrency", "4")

    @WORKER_EXAMPLES
    @with_explicit_examples
    @given(value=values.filter(_encodable))
    def check(value: Any) -> None:
        handle = app.enqueue(job_type, {"encoded": encoded(value)})
        neighbour = app.enqueue("add", {"a": 1, "b": 2})
        view = _ended(app, handle.id, worker, value)
        expect(value, view)
        done = _ended(app, neighbour.id, worker, value)
        assert done.state is State.COMPLETED and done.result == 3, (done.state, done.error)
        for path in (f"/jobs/{handle.id}", f"/jobs?type={job_type}&limit=1000"):
            response = http.get(path)
            assert response.status_code == 200, (path, response.text[:2000])

    check()
    assert worker.stop() == 0, worker.log()
    assert "parameters" not in worker.log()  # no failed batch was logged and retried


def _encodable(value: Any) -> bool:
    try:
        encoded(value)
    except ValueError:  # an int too long for Python's str()
        return False
    return True


def _ended(app: Conveyor, job_id: str, worker: WorkerProcess, value: Any) -> JobView:
    try:
        return app.wait(job_id, timeout=END_WITHIN_S)
    except WaitTimeout as exc:
        view = app.get(job_id)
        raise AssertionError(
            f"job {view.type} {job_id} still {view.state.value} after {END_WITHIN_S} s "
            f"({type(exc).__name__}); value {shown(value)}; worker "
            f"{'exited ' + str(worker.proc.returncode) if worker.proc.poll() is not None else 'alive'}"
            f"; its log:\n{worker.log()}"
        ) from None


def test_results_are_stored_or_fail_their_attempt_for_good(
    db_backend: Backend, http: TestClient
) -> None:
    def expect(value: Any, view: JobView) -> None:
        found = problems(value)
        if not found:
            assert view.state is State.COMPLETED, (shown(value), view.error)
            assert same_json(value, view.result), (shown(value), shown(view.result))
            return
        assert view.state is State.FAILED and view.error, (shown(value), view.state)
        assert view.error["type"] == "UnstorableResult", (shown(value), view.error)
        assert "the result cannot be stored" in view.error["message"]
        assert len(view.attempts) == 1  # refused for good: never retried

    _through_worker(db_backend, http, "value_result", expect)


def test_error_messages_are_recorded_made_storable(db_backend: Backend, http: TestClient) -> None:
    def expect(value: Any, view: JobView) -> None:
        message = clean_text(text_in(value), ERROR_MESSAGE_LIMIT)
        assert view.state is State.FAILED and view.error, (shown(value), view.state)
        assert view.error["type"] == "ValueError", (shown(value), view.error)
        assert view.error["message"] == message, (shown(value), shown(view.error["message"]))
        assert view.attempts[0].error_message == message
        assert "value_error" in (view.error["traceback"] or "")

    _through_worker(db_backend, http, "value_error", expect)


def test_progress_messages_are_checked_in_the_handler(
    db_backend: Backend, http: TestClient
) -> None:
    def expect(value: Any, view: JobView) -> None:
        text = text_in(value)
        if text_problem(text) is None and len(text) <= MESSAGE_LIMIT:
            assert view.state is State.COMPLETED, (shown(value), view.error)
            assert view.message == text, (shown(text), shown(view.message))
            return
        assert view.state is State.FAILED and view.error, (shown(value), view.state)
        assert view.error["type"] == "ValueError", (shown(value), view.error)
        assert view.error["message"].startswith("progress message"), view.error
        assert view.message is None  # the refused report changed nothing

    _through_worker(db_backend, http, "value_progress", expect)
