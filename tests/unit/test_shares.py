"""Shares: smooth weighted round robin of claim slots between queues."""

from __future__ import annotations

import pytest

from conveyor.core.shares import Shares

WEIGHTS = {"critical": 6, "default": 3, "low": 1}
EXPECTED = {"critical": 0.6, "default": 0.3, "low": 0.1}


def sequence(shares: Shares, n: int) -> list[str]:
    """The queue of each of ``n`` single-slot allocations."""
    out = []
    for _ in range(n):
        counts = shares.allocate(1)
        assert sum(counts.values()) == 1
        ((queue,),) = [[q for q, c in counts.items() if c == 1]]
        out.append(queue)
    return out


def test_single_slot_shares_within_one_percent() -> None:
    seq = sequence(Shares(WEIGHTS), 1000)
    for queue, share in EXPECTED.items():
        assert seq.count(queue) / 1000 == pytest.approx(share, abs=0.01)


def test_single_slot_shares_are_exact_per_period() -> None:
    seq = sequence(Shares(WEIGHTS), 1000)
    assert {q: seq.count(q) for q in WEIGHTS} == {"critical": 600, "default": 300, "low": 100}


@pytest.mark.parametrize("batch", [7, 3, 10, 13, 64])
def test_batched_shares_within_one_percent(batch: int) -> None:
    shares = Shares(WEIGHTS)
    totals = dict.fromkeys(WEIGHTS, 0)
    allocated = 0
    while allocated < 1000:
        counts = shares.allocate(batch)
        assert sum(counts.values()) == batch
        assert set(counts) == set(WEIGHTS)
        for q, c in counts.items():
            assert c >= 0
            totals[q] += c
        allocated += batch
    for queue, share in EXPECTED.items():
        assert totals[queue] / allocated == pytest.approx(share, abs=0.01)


def test_batched_and_single_allocations_agree() -> None:
    single = sequence(Shares(WEIGHTS), 70)
    batched = Shares(WEIGHTS)
    totals = dict.fromkeys(WEIGHTS, 0)
    for _ in range(10):
        for q, c in batched.allocate(7).items():
            totals[q] += c
    assert totals == {q: single.count(q) for q in WEIGHTS}


def test_no_queue_starves_in_any_window_of_ten() -> None:
    seq = sequence(Shares(WEIGHTS), 1000)
    for start in range(len(seq) - 10 + 1):
        window = seq[start : start + 10]
        assert set(window) == set(WEIGHTS), f"window at {start}: {window}"


def test_heavy_queue_is_interleaved_not_bursted() -> None:
    seq = sequence(Shares(WEIGHTS), 100)
    longest = run = 1
    for a, b in zip(seq, seq[1:], strict=False):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    assert longest < 6


def test_every_queue_served_when_batch_covers_total_weight() -> None:
    shares = Shares(WEIGHTS)
    for _ in range(20):
        assert shares.allocate(10) == {"critical": 6, "default": 3, "low": 1}


def test_equal_weights_round_robin() -> None:
    seq = sequence(Shares({"a": 1, "b": 1, "c": 1}), 9)
    assert seq == ["a", "b", "c"] * 3


def test_single_queue_gets_everything() -> None:
    shares = Shares({"only": 5})
    assert shares.allocate(4) == {"only": 4}
    assert shares.allocate(1) == {"only": 1}


def test_extreme_weights_do_not_starve_the_light_queue() -> None:
    seq = sequence(Shares({"big": 99, "tiny": 1}), 1000)
    assert seq.count("tiny") == 10
    assert seq.count("big") == 990


@pytest.mark.parametrize("slots", [0, -1, -10])
def test_no_slots(slots: int) -> None:
    shares = Shares(WEIGHTS)
    assert shares.allocate(slots) == {"critical": 0, "default": 0, "low": 0}
    # and the rotation is not disturbed
    assert shares.allocate(10) == {"critical": 6, "default": 3, "low": 1}


@pytest.mark.parametrize("slots", [1, 5, 100])
def test_strict_gives_all_to_heaviest(slots: int) -> None:
    shares = Shares({"low": 1, "critical": 6, "default": 3}, strict=True)
    for _ in range(3):
        assert shares.allocate(slots) == {"low": 0, "critical": slots, "default": 0}


def test_strict_ties_keep_given_order() -> None:
    shares = Shares({"b": 2, "a": 2, "c": 1}, strict=True)
    assert shares.allocate(3) == {"b": 3, "a": 0, "c": 0}
    assert shares.order == ["b", "a", "c"]


def test_strict_zero_slots() -> None:
    assert Shares(WEIGHTS, strict=True).allocate(0) == {"critical": 0, "default": 0, "low": 0}


def test_fallback_order_is_by_weight() -> None:
    shares = Shares({"low": 1, "default": 3, "critical": 6})
    assert shares.fallback_order() == ["critical", "default", "low"]
    assert Shares({"x": 1, "y": 5, "z": 2}, strict=True).fallback_order() == ["y", "z", "x"]


def test_fallback_order_ties_keep_given_order() -> None:
    assert Shares({"b": 1, "a": 1, "c": 2}).fallback_order() == ["c", "b", "a"]


def test_weights_are_copied() -> None:
    weights = {"a": 1, "b": 1}
    shares = Shares(weights)
    weights["c"] = 100
    assert shares.weights == {"a": 1, "b": 1}
    assert set(shares.allocate(4)) == {"a", "b"}


def test_empty_weights_rejected() -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        Shares({})


def test_a_large_claim_is_split_exactly_in_one_round() -> None:
    """1,000 slots at once: the exact split (largest remainder), the remainder carried so that
    rounds add up to the weights exactly."""
    shares = Shares({"a": 2, "b": 1})
    assert shares.allocate(1000) == {"a": 667, "b": 333}
    assert shares.allocate(1000) == {"a": 666, "b": 334}
    assert shares.allocate(1000) == {"a": 667, "b": 333}
    total = {"a": 0, "b": 0}
    for _ in range(30):
        for queue, n in shares.allocate(7).items():
            total[queue] += n
    assert total == {"a": 140, "b": 70}
