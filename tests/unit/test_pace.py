"""A rebuild's pace (consumer/pace.py): how long it holds batches back, on a clock the test moves."""

from __future__ import annotations

import pytest

from adapters.generations import Generations
from adapters.settings import Settings
from consumer.pace import CREDIT_S, POLL_S, Pace, keyed_rate


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


class Source:
    """A pace an operator changes: what `ums-find pace` would have set, read by the rebuild."""

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate
        self.reads = 0

    def __call__(self) -> float | None:
        self.reads += 1
        return self.rate


def test_a_new_pace_is_read_at_most_once_per_poll_and_applies_to_the_next_batches() -> None:
    clock, source = Clock(), Source()
    pace = Pace(1000, clock, clock.sleep, source)
    pace.after(100)  # 0.1 s
    pace.after(100)
    assert source.reads == 1  # 0.1 s after the first read: not again yet
    source.rate = 500.0
    for _ in range(12):
        pace.after(100)
    assert pace.rate == 500.0
    assert clock.slept[-1] == pytest.approx(0.2)  # 100 events at 500/s


def test_lifting_the_pace_ends_a_long_sleep_within_a_poll() -> None:
    clock, source = Clock(), Source()
    pace = Pace(10, clock, lambda s: (clock.sleep(s), setattr(source, "rate", 0.0))[0], source)
    slept = pace.after(1000)  # 1,000 events at 10/s owe 100 s; the operator lifts the pace meanwhile
    assert slept == pytest.approx(POLL_S)  # woke once, read "unpaced", stopped sleeping
    assert pace.after(1000) == 0.0


def test_a_slower_pace_mid_sleep_stretches_what_is_still_owed() -> None:
    clock, source = Clock(), Source()
    pace = Pace(100, clock, lambda s: (clock.sleep(s), setattr(source, "rate", 50.0))[0], source)
    # 500 events at 100/s owe 5 s; after the first second the 4 s still owed take 8 s at 50/s.
    assert pace.after(500) == pytest.approx(POLL_S + 4.0 * 2)


def test_a_failed_or_empty_read_keeps_the_pace() -> None:
    clock, source = Clock(), Source(None)
    pace = Pace(1000, clock, clock.sleep, source)
    for _ in range(30):
        pace.after(100)
    assert pace.rate == 1000 and source.reads >= 2


def test_a_stop_ends_the_sleep_at_once() -> None:
    clock = Clock()
    pace = Pace(10, clock, lambda s: True)  # a stop event already set: its wait returns True at once
    assert pace.after(1000) == 0.0


def test_the_pace_key_names_the_rebuilds_generation(store) -> None:
    generations = Generations(store)
    generations.ensure()
    assert generations.set_pace(5000) is None  # no rebuild runs: nothing set
    target, claim = generations.start(60_000)
    assert generations.pace(target) is None
    assert generations.set_pace(5000) == target and generations.pace(target) == 5000.0
    assert keyed_rate(generations, target, share=4)() == 1250.0  # each of 4 workers
    assert generations.set_pace(1_234_567) == target and generations.pace(target) == 1_234_567.0
    store.client.set(generations.pace_key, f"{target}:fast")  # by hand, and wrong
    assert generations.pace(target) is None  # ignored: the rebuild keeps the pace it has
    generations.abandon(claim)
    later, _ = generations.start(60_000)
    assert generations.pace(later) is None  # the ended rebuild's pace is not the next one's
