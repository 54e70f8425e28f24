"""Histogram observations as per-bucket counters (cumulated only when rendered)."""

from __future__ import annotations

from conveyor.core.metrics import LE, new_deltas, observe, seconds_between


def test_each_observation_lands_in_one_bucket_and_the_sum() -> None:
    deltas = new_deltas()
    for seconds in (0.003, 0.2, 0.2, 5000.0, -1.0):
        observe(deltas, "job_run_seconds", "t", "q", seconds)
    buckets = {k[3]: v for k, v in deltas.items() if k[0] == "job_run_seconds_bucket"}
    assert buckets == {"0.005": 2.0, "0.25": 2.0, "+Inf": 1.0}  # -1 s counts as 0 s
    assert deltas[("job_run_seconds_sum", "t", "q", "")] == 0.003 + 0.4 + 5000.0
    assert LE[0] == "0.005" and LE[-1] == "3600.0"


def test_an_observation_on_a_bound_belongs_to_that_bucket() -> None:
    deltas = new_deltas()
    observe(deltas, "w", "t", "q", 0.25)
    assert [k[3] for k in deltas if k[0] == "w_bucket"] == ["0.25"]
    assert seconds_between(None, None) is None
