"""The handler's ctx: monotonic progress, stages, messages, dirty marking and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from conveyor.core.errors import JobCanceled
from conveyor.worker.context import Context, Progress


def make(
    stages: Sequence[str] = (),
    progress: Progress | None = None,
    on_dirty: object = None,
) -> tuple[Context, Progress]:
    state = progress or Progress(None, None)
    ctx = Context(
        job_id="job-1",
        job_type="reports.build",
        queue="default",
        attempt=2,
        stages=stages,
        progress=state,
        on_dirty=on_dirty,
    )
    return ctx, state


def test_identity() -> None:
    ctx, _ = make(stages=["a", "b"])
    assert ctx.job_id == "job-1"
    assert ctx.job_type == "reports.build"
    assert ctx.queue == "default"
    assert ctx.attempt == 2
    assert ctx.stages == ("a", "b")
    assert ctx.cancelled is False
    assert ctx.cancel_reason is None
    assert ctx.logger.extra == {
        "job_id": "job-1",
        "job_type": "reports.build",
        "queue": "default",
        "attempt": 2,
        "worker_id": "",
    }


def test_progress_initial_state() -> None:
    p = Progress(None, None)
    assert (p.progress, p.stage, p.message, p.dirty) == (None, None, None, False)
    p2 = Progress(40.0, "load")
    assert (p2.progress, p2.stage) == (40.0, "load")


def test_progress_sets_value_and_marks_dirty() -> None:
    ctx, state = make()
    ctx.progress(25)
    assert state.progress == 25.0
    assert type(state.progress) is float
    assert state.dirty is True


def test_progress_is_monotonic() -> None:
    ctx, state = make()
    ctx.progress(60)
    ctx.progress(30)
    assert state.progress == 60.0
    ctx.progress(60.5)
    assert state.progress == 60.5
    ctx.progress(0)
    assert state.progress == 60.5
    ctx.progress(100)
    assert state.progress == 100.0


def test_progress_does_not_go_below_a_resumed_value() -> None:
    ctx, state = make(progress=Progress(50.0, None))
    ctx.progress(10)
    assert state.progress == 50.0


@pytest.mark.parametrize(
    "bad", [-0.1, -1, 100.01, 101, float("nan"), float("inf"), True, "50", [50]]
)
def test_out_of_range_or_non_number_raises(bad: object) -> None:
    ctx, state = make()
    ctx.progress(10)
    state.dirty = False
    with pytest.raises(ValueError, match="0 to 100"):
        ctx.progress(bad)  # type: ignore[arg-type]
    assert state.progress == 10.0
    assert state.dirty is False


@pytest.mark.parametrize("edge", [0, 0.0, 100, 100.0])
def test_bounds_are_inclusive(edge: float) -> None:
    ctx, state = make()
    ctx.progress(edge)
    assert state.progress == float(edge)


def test_message_stored_and_kept() -> None:
    ctx, state = make()
    ctx.progress(10, message="loading rows")
    assert state.message == "loading rows"
    ctx.progress(20)
    assert state.message == "loading rows"
    ctx.progress(message=42)  # type: ignore[arg-type]
    assert state.message == "42"
    assert state.progress == 20.0


def test_progress_without_arguments_still_marks_dirty() -> None:
    calls: list[str] = []
    ctx, state = make(on_dirty=calls.append)
    ctx.progress()
    assert state.dirty is True
    assert calls == ["job-1"]
    assert state.progress is None


def test_stage_with_declared_stages_derives_progress() -> None:
    ctx, state = make(stages=["fetch", "parse", "load", "index"])
    ctx.stage("fetch")
    assert (state.stage, state.progress) == ("fetch", 0.0)
    ctx.stage("parse")
    assert (state.stage, state.progress) == ("parse", 25.0)
    ctx.stage("index", message="almost")
    assert (state.stage, state.progress, state.message) == ("index", 75.0, "almost")


def test_a_stage_cannot_claim_the_next_ones_share() -> None:
    """Two stages: 100 % reported inside the first is its end (50 %), not the job's end."""
    ctx, state = make(stages=["download", "convert"])
    ctx.stage("download")
    ctx.progress(100)
    assert state.progress == 50.0
    ctx.stage("convert")
    assert state.progress == 50.0
    ctx.progress(80)
    assert state.progress == 80.0


def test_stage_progress_is_a_share_of_the_current_stage() -> None:
    ctx, state = make(stages=["fetch", "parse", "load", "index"])
    with pytest.raises(ValueError, match="needs a current stage"):
        ctx.stage_progress(10)
    ctx.stage("parse")
    ctx.stage_progress(50, message="page 5 of 10")
    assert (state.progress, state.message) == (37.5, "page 5 of 10")
    ctx.stage_progress(100)
    assert state.progress == 50.0
    for bad in (-1, 101, True, "50"):
        with pytest.raises(ValueError, match="stage progress must be"):
            ctx.stage_progress(bad)  # type: ignore[arg-type]
    assert state.progress == 50.0


def test_a_message_belongs_to_its_stage() -> None:
    ctx, state = make(stages=["fetch", "parse"])
    ctx.stage("fetch", message="3 of 9 pages")
    ctx.progress(20)
    assert state.message == "3 of 9 pages"
    ctx.stage("fetch")  # the same stage again keeps it
    assert state.message == "3 of 9 pages"
    ctx.stage("parse")
    assert state.message is None
    ctx.stage("parse", message="parsing")
    assert state.message == "parsing"


def test_stage_progress_uses_index_over_len() -> None:
    stages = ["a", "b", "c"]
    for i, name in enumerate(stages):
        ctx, state = make(stages=stages)
        ctx.stage(name)
        assert state.progress == pytest.approx(100.0 * i / len(stages))


def test_stage_derived_progress_is_monotonic() -> None:
    ctx, state = make(stages=["a", "b", "c", "d"])
    ctx.stage("c")
    ctx.stage("a")
    assert state.stage == "a"
    assert state.progress == 50.0
    ctx.progress(80)  # capped at stage a's end (25), and progress never goes back
    assert state.progress == 50.0
    ctx.stage("d")
    ctx.progress(80)
    ctx.stage("b")
    assert state.progress == 80.0


def test_explicit_pct_within_a_stage() -> None:
    ctx, state = make(stages=["a", "b"])
    ctx.progress(70, stage="b")
    assert (state.stage, state.progress) == ("b", 70.0)
    ctx.progress(10, stage="b")
    assert state.progress == 70.0


def test_unknown_stage_rejected_naming_declared_ones() -> None:
    ctx, state = make(stages=["fetch", "parse"])
    with pytest.raises(ValueError) as info:
        ctx.stage("load")
    msg = str(info.value)
    assert "'load'" in msg
    assert "'reports.build'" in msg
    assert "fetch, parse" in msg
    assert state.stage is None
    assert state.progress is None
    assert state.dirty is False


def test_any_stage_allowed_without_declared_stages() -> None:
    ctx, state = make()
    ctx.stage("whatever")
    assert state.stage == "whatever"
    assert state.progress is None
    ctx.progress(30, stage="next")
    assert (state.stage, state.progress) == ("next", 30.0)


def test_on_dirty_called_with_job_id_each_time() -> None:
    calls: list[str] = []
    ctx, _ = make(stages=["a", "b"], on_dirty=calls.append)
    ctx.progress(10)
    ctx.stage("b")
    ctx.progress(message="m")
    assert calls == ["job-1", "job-1", "job-1"]


def test_on_dirty_not_called_on_error() -> None:
    calls: list[str] = []
    ctx, _ = make(stages=["a"], on_dirty=calls.append)
    with pytest.raises(ValueError):
        ctx.progress(200)
    with pytest.raises(ValueError):
        ctx.stage("zzz")
    assert calls == []


def test_calls_can_be_ignored_or_awaited() -> None:
    ctx, state = make(stages=["a", "b"])
    # ignored: the call takes effect immediately
    ctx.progress(5)
    assert state.progress == 5.0

    async def handler() -> list[object]:
        results = [
            await ctx.progress(20),
            await ctx.stage("b"),
            await ctx.check(),
            await ctx.progress(message="done"),
        ]
        ctx.progress(60)  # not awaited inside a coroutine either
        return results

    results = asyncio.run(handler())
    assert results == [None, None, None, None]
    assert state.progress == 60.0
    assert state.stage == "b"
    assert state.message == "done"


def test_returned_awaitable_is_reusable() -> None:
    ctx, _ = make()
    done = ctx.progress(1)

    async def twice() -> tuple[object, object]:
        return await done, await done

    assert asyncio.run(twice()) == (None, None)


def test_check_passes_when_not_cancelled() -> None:
    ctx, _ = make()
    ctx.check()
    assert ctx.cancelled is False


def test_cancel_makes_calls_raise() -> None:
    calls: list[str] = []
    ctx, state = make(stages=["a", "b"], on_dirty=calls.append)
    ctx.progress(10)
    ctx._cancel("cancel")
    assert ctx.cancelled is True
    assert ctx.cancel_reason == "cancel"
    with pytest.raises(JobCanceled, match="cancel"):
        ctx.check()
    with pytest.raises(JobCanceled):
        ctx.progress(50)
    with pytest.raises(JobCanceled):
        ctx.stage("b")
    with pytest.raises(JobCanceled):
        ctx.progress(message="still going")
    assert state.progress == 10.0
    assert state.stage is None
    assert state.message is None
    assert calls == ["job-1"]


def test_cancel_inside_async_handler() -> None:
    ctx, _ = make()

    async def handler() -> None:
        await ctx.progress(10)
        ctx._cancel("timeout")
        await ctx.progress(20)

    with pytest.raises(JobCanceled, match="timeout"):
        asyncio.run(handler())


def test_first_cancel_reason_wins() -> None:
    ctx, _ = make()
    ctx._cancel("timeout")
    ctx._cancel("shutdown")
    assert ctx.cancel_reason == "timeout"
    with pytest.raises(JobCanceled, match="timeout"):
        ctx.check()


def test_job_canceled_is_not_a_value_error() -> None:
    # handlers catching ValueError (bad progress) must not swallow cancellation
    assert not issubclass(JobCanceled, ValueError)
    assert issubclass(JobCanceled, Exception)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"message": "m\x00"}, "progress message contains the NUL character"),
        ({"message": "m\ud800"}, "progress message contains an unpaired UTF-16 surrogate"),
        ({"message": "x" * 5000}, "progress message is 5000 characters, over the limit of 4096"),
        ({"stage": "s\x00"}, "stage contains the NUL character"),
        ({"stage": "s" * 201}, "stage is 201 characters, over the limit of 200"),
        ({"pct": float("nan")}, "progress must be a number from 0 to 100"),
    ],
)
def test_unstorable_reports_raise_in_the_handler_and_change_nothing(
    call: dict[str, object], expected: str
) -> None:
    marked: list[str] = []
    ctx, state = make(on_dirty=marked.append)
    ctx.progress(10, message="before")
    marked.clear()
    pct = call.pop("pct", 60)
    with pytest.raises(ValueError, match=expected):
        ctx.progress(pct, **call)  # type: ignore[arg-type]
    assert (state.progress, state.stage, state.message) == (10.0, None, "before")
    assert marked == []
