"""How many jobs a worker claims ahead of its slots, and when it gives them back."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.store import ClaimedJob
from conveyor.worker.ahead import AUTO_MAX, HOLD_S, HORIZON_S, Ahead


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(n: int) -> ClaimedJob:
    return ClaimedJob(
        id=f"job-{n}", type="t", queue="q", payload={}, attempt=1, charged=1, max_attempts=3,
        timeout_s=None, started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def test_nothing_is_claimed_ahead_before_a_pace_is_known() -> None:
    ahead = Ahead(10, None, Clock())
    assert ahead.target() == 0
    assert ahead.want(10) == 10  # the free slots only
    assert ahead.want(0) == 0


def test_quick_jobs_are_claimed_ahead_by_their_pace_and_slow_ones_not() -> None:
    clock = Clock()
    quick = Ahead(10, None, clock)
    quick.ended(0.001)  # 10 slots at 1 ms a job: 10,000 jobs/s, 500 in the horizon
    assert quick.target() == min(AUTO_MAX, int(10 * HORIZON_S / 0.001))
    slow = Ahead(10, None, clock)
    slow.ended(2.0)
    assert slow.target() == 0
    limited = Ahead(10, 7, clock)
    limited.ended(0.001)
    assert limited.target() == 7
    off = Ahead(10, 0, clock)
    off.ended(0.001)
    assert off.target() == 0 and off.want(3) == 3


def test_the_pace_follows_the_jobs() -> None:
    ahead = Ahead(10, None, Clock())
    ahead.ended(0.001)
    for _ in range(100):
        ahead.ended(1.0)  # the jobs became slow
    assert ahead.pace_s is not None and ahead.pace_s > 0.9
    assert ahead.target() == 0


def test_a_claim_tops_the_stock_up_only_once_it_is_down_to_half() -> None:
    ahead = Ahead(10, 100, Clock())
    ahead.ended(0.0001)
    assert ahead.target() == 100
    for n in range(60):
        ahead.hold(job(n))
    assert ahead.want(0) == 0  # 60 held of 100: enough
    while len(ahead) > 50:
        ahead.next()
    assert ahead.want(0) == 50  # down to half: top up
    assert ahead.want(2) == 2 + 50  # free slots count on top


def test_nothing_is_claimed_ahead_while_no_job_ends() -> None:
    clock = Clock()
    ahead = Ahead(10, None, clock)
    ahead.ended(0.001)
    clock.now += HOLD_S * 1.5  # every slot busy with a long job since
    assert ahead.target() == 0 and ahead.want(0) == 0


def test_held_jobs_are_overdue_once_no_slot_frees_for_the_hold_time() -> None:
    clock = Clock()
    ahead = Ahead(1, None, clock)
    ahead.ended(0.001)
    ahead.hold(job(1))
    ahead.hold(job(2))
    clock.now += HOLD_S / 2
    assert not ahead.overdue()
    ahead.ended(0.001)  # a slot freed: the wait starts again
    clock.now += HOLD_S * 0.9
    assert not ahead.overdue()
    clock.now += HOLD_S * 0.2
    assert ahead.overdue()
    assert [j.id for j in ahead.take_all()] == ["job-1", "job-2"] and not ahead.overdue()


def test_a_held_job_can_be_taken_out_and_the_rest_are_owned() -> None:
    ahead = Ahead(1, None, Clock())
    for n in range(3):
        ahead.hold(job(n))
    assert ahead.take("job-1") is not None and ahead.take("job-1") is None
    assert ahead.owned() == [("job-0", 1), ("job-2", 1)]
    first = ahead.next()
    assert first is not None and first.id == "job-0"
