"""A rebuild's pace (consumer/pace.py): how long it holds batches back, on a clock the test moves."""

from __future__ import annotations

import pytest

from adapters.settings import Settings
from consumer.pace import CREDIT_S, Pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_no_pace_never_sleeps() -> None:
    clock = Clock()
    pace = Pace(0, clock, clock.sleep)
    assert [pace.after(10_000) for _ in range(3)] == [0.0, 0.0, 0.0] and clock.slept == []


def test_batches_written_in_no_time_take_their_share_of_a_second_each() -> None:
    clock = Clock()
    pace = Pace(1000, clock, clock.sleep)
    for _ in range(4):
        pace.after(500)
    assert clock.slept == [0.5, 0.5, 0.5, 0.5] and clock.now == 102.0  # 2,000 events at 1,000/s


def test_time_spent_working_counts_toward_the_pace() -> None:
    clock = Clock()
    pace = Pace(1000, clock, clock.sleep)
    pace.after(500)
    clock.now += 0.3  # the next batch took 0.3 s to decode
    assert pace.after(500) == pytest.approx(0.2)  # due at 101.0, now 100.8
    clock.now += 2.0  # slower than the pace: nothing to wait for
    assert pace.after(500) == 0.0


def test_a_pause_banks_at_most_the_credit_so_no_long_burst_follows() -> None:
    clock = Clock()
    pace = Pace(1024, clock, clock.sleep)  # batches of 1/8 s: sums exact in binary
    pace.after(1024)
    clock.now += 60.0  # stopped for a minute
    free = 0
    while pace.after(128) == 0.0:
        free += 128
    assert free == CREDIT_S * 1024  # a second's worth of events at full speed, then paced again


def test_a_pace_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="UMS_REBUILD_EVENTS_PER_S"):
        Settings(rebuild_events_per_s=-1)
    with pytest.raises(ValueError, match="UMS_REBUILD_EVENTS_PER_S"):
        Settings(rebuild_events_per_s=float("nan"))  # float() takes "nan"; a sleep of NaN would fail mid-rebuild
