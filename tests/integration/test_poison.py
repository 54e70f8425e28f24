"""One bad value fails only its own job: results, errors, progress and stages that cannot be
stored, through real worker processes on every backend (issue 13, defect 1)."""

from __future__ import annotations

import time

from conveyor import State
from conveyor.core.outcome import ERROR_MESSAGE_LIMIT
from tests.conftest import Backend

RESULT_KINDS = ["nul", "surrogate", "nan", "deep", "key", "not_json"]


def _neighbours_complete(app, count: int = 20, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    handles = [app.enqueue("add", {"a": i, "b": 1}) for i in range(count)]
    for i, handle in enumerate(handles):
        view = handle.wait(timeout=timeout)
        assert view.state is State.COMPLETED and view.result == i + 1


def test_unstorable_results_fail_their_job_and_nothing_else(backend: Backend) -> None:
    app = backend.app()
    worker = backend.worker("--concurrency", "8")
    poison = {kind: app.enqueue("poison_result", {"kind": kind}) for kind in RESULT_KINDS}
    _neighbours_complete(app)
    for kind, handle in poison.items():
        view = handle.wait(timeout=20)
        assert view.state is State.FAILED, kind
        assert view.error and view.error["type"] == "UnstorableResult", (kind, view.error)
        assert "the result cannot be stored" in view.error["message"]
        assert len(view.attempts) == 1, kind  # refused for good: never retried
    assert "v" in poison["nul"].wait().error["message"]  # names the field
    assert "NUL" in poison["nul"].wait().error["message"]
    assert "deeper than 64" in poison["deep"].wait().error["message"]
    # Listing them works for everyone.
    assert {v.id for v in app.list(type="poison_result", limit=50).items} == {
        h.id for h in poison.values()
    }
    # Retrying one runs it again: it fails again, and the worker keeps flowing.
    app.retry(poison["nul"].id)
    assert poison["nul"].wait(timeout=20).state is State.FAILED
    assert len(app.get(poison["nul"].id).attempts) == 2
    _neighbours_complete(app, count=5)
    started = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started < 10  # nothing wedged to wait for
    assert "parameters" not in worker.log()


def test_unstorable_error_text_is_recorded_made_storable(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    kinds = ["nul", "surrogate", "long", "type"]
    handles = {kind: app.enqueue("poison_error", {"kind": kind}) for kind in kinds}
    _neighbours_complete(app, count=5)
    for kind, handle in handles.items():
        view = handle.wait(timeout=20)
        assert view.state is State.FAILED and len(view.attempts) == 2  # retried by its policy
        error = view.error
        assert error and "Traceback" in (error["traceback"] or "")
        assert view.attempts[0].error_message == error["message"]
        if kind == "nul":
            assert error["message"] == "bad\\x00text"
        elif kind == "surrogate":
            assert error["message"] == "bad\\ud800text"
        elif kind == "long":
            assert len(error["message"]) <= ERROR_MESSAGE_LIMIT
            assert error["message"].endswith("(truncated)")
            assert "poison_error" in error["traceback"]  # the frames survive a huge message
        else:
            assert error["type"].startswith("Badxxx") and len(error["type"]) <= 200


def test_progress_and_stage_text_is_checked_in_the_handler(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    nul = app.enqueue("poison_progress", {"kind": "nul"})
    surrogate = app.enqueue("poison_progress", {"kind": "surrogate"})
    caught = app.enqueue("poison_progress", {"kind": "long", "catch": True})
    stage = app.enqueue("poison_stage", {"kind": "long"})
    _neighbours_complete(app)
    view = nul.wait(timeout=20)
    assert view.state is State.FAILED and view.error
    assert view.error["type"] == "ValueError"
    assert "progress message contains the NUL character" in view.error["message"]
    assert "surrogate" in surrogate.wait(timeout=20).error["message"]
    view = caught.wait(timeout=20)
    assert view.state is State.COMPLETED
    assert view.result.startswith("refused: progress message is 100000 characters")
    assert view.message is None  # the refused report changed nothing
    view = stage.wait(timeout=20)
    assert view.state is State.FAILED and "stage is 100000 characters" in view.error["message"]
