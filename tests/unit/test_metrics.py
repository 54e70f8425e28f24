"""Histogram observations as per-bucket counters (cumulated only when rendered)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.core.metrics import (
    LE,
    minute_of,
    new_deltas,
    observe,
    per_queue,
    quantile,
    seconds_between,
)


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


def test_a_quantile_is_interpolated_inside_its_bucket() -> None:
    # 10 observations in (0.05, 0.1], 10 in (0.1, 0.25]: the median is the first bucket's top.
    counts = {"0.1": 10.0, "0.25": 10.0}
    assert quantile(counts, 0.5) == pytest.approx(0.1)
    assert quantile(counts, 0.25) == pytest.approx(0.075)  # halfway through (0.05, 0.1]
    assert quantile(counts, 0.95) == pytest.approx(0.1 + 0.15 * 0.9)
    assert quantile({"0.005": 4.0}, 0.5) == pytest.approx(0.0025)  # the first starts at 0


def test_a_quantile_beyond_the_last_bound_is_that_bound_and_none_without_data() -> None:
    assert quantile({"+Inf": 3.0}, 0.99) == 3600.0
    assert quantile({"1.0": 99.0, "+Inf": 1.0}, 0.99) == pytest.approx(1.0)
    assert quantile({}, 0.5) is None
    assert quantile({"1.0": 0.0}, 0.5) is None


def test_quantiles_of_observed_buckets_order_and_bracket_the_data() -> None:
    deltas = new_deltas()
    for seconds in [0.01 * i for i in range(1, 101)]:  # 0.01 .. 1.0 s
        observe(deltas, "w", "t", "q", seconds)
    counts = {k[3]: v for k, v in deltas.items() if k[0] == "w_bucket"}
    p50, p95, p99 = (quantile(counts, q) for q in (0.5, 0.95, 0.99))
    assert p50 is not None and p95 is not None and p99 is not None
    assert 0.25 <= p50 <= 0.5 < p95 <= p99 <= 1.0


def test_minute_rows_fold_job_types_and_keep_only_the_history_metrics() -> None:
    deltas = new_deltas()
    observe(deltas, "job_wait_seconds", "a", "q", 0.2)
    observe(deltas, "job_wait_seconds", "b", "q", 0.2)
    deltas[("jobs_completed_total", "a", "q", "")] += 1
    deltas[("jobs_completed_total", "b", "r", "")] += 2
    deltas[("writes_fenced_total", "", "", "")] += 1
    assert per_queue(deltas) == {
        ("job_wait_seconds_bucket", "q", "0.25"): 2.0,
        ("job_wait_seconds_sum", "q", ""): 0.4,
        ("jobs_completed_total", "q", ""): 1.0,
        ("jobs_completed_total", "r", ""): 2.0,
    }
    at = datetime(2026, 1, 5, 12, 3, 59, 999999, tzinfo=UTC)
    assert minute_of(at) == datetime(2026, 1, 5, 12, 3, tzinfo=UTC)
