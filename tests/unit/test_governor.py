"""The rebuild's governor (consumer/governor.py): its limit from the probe's windows, on a clock the test moves."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.settings import Settings
from consumer import governor as governor_module
from consumer.governor import (
    CREEP,
    CREEP_AFTER_S,
    DECIDE_S,
    DECREASE,
    FLOOR_EVENTS_PER_S,
    INCREASE,
    LIFT,
    SLOW_START,
    STALE_S,
    Governor,
    delay_of,
    governor,
    probing,
    reading_of,
)
from consumer.pace import Pace


class Rig:
    """A clock, and a probe whose windows say Redis answers `late` seconds late."""

    def __init__(self) -> None:
        self.now = 50.0
        self.late = 0.0
        self.window = 0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def reading(self) -> tuple[int, float] | None:
        return (self.window, self.late) if self.window else None

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def window(rig: Rig, gov: Governor, events_per_s: float, chunks: int = 10) -> float:
    """One DECIDE_S of chunks at `events_per_s`, then the probe's next window; the limit after it."""
    for _ in range(chunks):
        rig.now += DECIDE_S / chunks
        gov.account(round(events_per_s * DECIDE_S / chunks))
    rig.window += 1
    return gov.account(0)


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
def gov(rig: Rig) -> Governor:
    return Governor(rig.reading, 0.002, rig.clock)


def test_a_prompt_redis_leaves_the_rebuild_unlimited(rig: Rig, gov: Governor) -> None:
    assert [window(rig, gov, 80_000) for _ in range(5)] == [0.0] * 5


def test_no_window_yet_decides_nothing(rig: Rig, gov: Governor) -> None:
    rig.late = 0.050
    assert gov.account(10_000) == 0.0 and gov.account(10_000) == 0.0


def test_a_late_redis_cuts_the_limit_below_the_rate_reached(rig: Rig, gov: Governor) -> None:
    window(rig, gov, 80_000)
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    assert limit == pytest.approx(DECREASE * 80_000, rel=0.01)
    assert window(rig, gov, limit) == pytest.approx(DECREASE * limit, rel=0.01)


def test_one_window_is_one_decision(rig: Rig, gov: Governor) -> None:
    window(rig, gov, 80_000)
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    assert [gov.account(100) for _ in range(5)] == [limit] * 5  # the same window read again


def test_the_limit_never_falls_below_the_floor(rig: Rig, gov: Governor) -> None:
    rig.late = 0.050
    for _ in range(40):
        window(rig, gov, gov.limit or 80_000)
    assert gov.limit == FLOOR_EVENTS_PER_S


def test_the_limit_rises_again_and_is_lifted_when_redis_is_prompt(rig: Rig, gov: Governor) -> None:
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    rig.late = 0.0
    assert window(rig, gov, limit) == pytest.approx(INCREASE * limit, rel=0.01)
    for _ in range(20):  # the rebuild reaches at most 20,000 now: the limit passes it and goes
        window(rig, gov, min(gov.limit or 20_000, 20_000))
    assert gov.limit == 0.0


def test_between_half_the_target_and_the_target_a_young_rebuild_holds_by_default(rig: Rig, gov: Governor) -> None:
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    rig.late = 0.0015  # not over 2 ms, not under 1
    assert CREEP > 1.0 and CREEP_AFTER_S > 2 * DECIDE_S and window(rig, gov, limit) == limit


def test_by_default_a_rebuild_older_than_the_wait_creeps_in_the_band(rig: Rig, gov: Governor) -> None:
    assert CREEP > 1.0
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    rig.late = 0.0015
    young = round(CREEP_AFTER_S / DECIDE_S) - 1  # windows 2 to CREEP_AFTER_S / DECIDE_S: younger than the wait
    assert [window(rig, gov, limit) for _ in range(young)] == [limit] * young
    assert window(rig, gov, limit) == pytest.approx(CREEP * limit, rel=0.01)
    assert CREEP < INCREASE  # a window in the band never raises more than a prompt one


def test_a_creep_raises_the_limit_between_half_the_target_and_the_target(rig: Rig, gov: Governor, monkeypatch) -> None:
    monkeypatch.setattr(governor_module, "CREEP", 1.05)
    monkeypatch.setattr(governor_module, "CREEP_AFTER_S", 0.0)
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    rig.late = 0.0015  # not over 2 ms, not under 1
    assert window(rig, gov, limit) == pytest.approx(1.05 * limit, rel=0.01)


def test_a_creep_with_a_wait_holds_until_the_rebuild_is_that_old(rig: Rig, gov: Governor, monkeypatch) -> None:
    monkeypatch.setattr(governor_module, "CREEP", 1.05)
    monkeypatch.setattr(governor_module, "CREEP_AFTER_S", 10 * DECIDE_S)
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    rig.late = 0.0015  # not over 2 ms, not under 1
    held = [window(rig, gov, limit) for _ in range(9)]  # windows 2 to 10: the rebuild is younger than the wait
    assert held == [limit] * 9
    assert window(rig, gov, limit) == pytest.approx(1.05 * limit, rel=0.01)  # the eleventh: past it


@pytest.mark.parametrize("creep", [1.05, 1.0])
def test_in_the_mix_seen_at_20_40k_the_limit_walks_down_only_without_the_creep(
    rig: Rig, gov: Governor, monkeypatch, creep: float
) -> None:
    """The direction of the drift, not its level: the mix here does not change with the rate as Redis's does."""
    monkeypatch.setattr(governor_module, "CREEP", creep)
    monkeypatch.setattr(governor_module, "CREEP_AFTER_S", 0.0)
    rig.late = 0.010
    start = window(rig, gov, 80_000)
    # 100 windows (50 s) in the mix the probe saw at 20-40k events/s: 16 % late, 24 % under half the
    # target, the rest between (docs/decisions.md "A creep").
    mix = [0.010] * 4 + [0.0005] * 6 + [0.0015] * 15
    for i in range(100):
        rig.late = mix[(7 * i) % len(mix)]
        window(rig, gov, gov.limit)
    assert (gov.limit > start) == (creep > 1.0)


def test_the_delay_is_the_90th_percentile_above_the_fastest_probe() -> None:
    probes = [0.0002] * 9 + [0.0102]
    assert delay_of(probes, 0.0002) == 0.0  # one slow probe in ten is the 10 %
    assert delay_of([*probes, 0.0102], 0.0002) == pytest.approx(0.010)


def test_the_pace_sleeps_to_the_lower_of_its_rate_and_the_limit(rig: Rig, gov: Governor) -> None:
    pace = Pace(10_000, rig.clock, rig.sleep, governor=gov)
    assert pace.effective() == 10_000
    gov.limit = 4_000
    pace.after(400)
    assert pace.effective() == 4_000 and rig.slept == [pytest.approx(0.1)]
    gov.limit = 0.0
    pace.after(400)
    assert pace.effective() == 10_000


def test_a_silent_probe_lifts_the_limit(rig: Rig, gov: Governor) -> None:
    rig.late = 0.010
    window(rig, gov, 80_000)
    window(rig, gov, 80_000)
    assert gov.limit > 0
    for _ in range(int(STALE_S / DECIDE_S) + 1):  # chunks go on, no new window comes
        rig.now += DECIDE_S
        gov.account(1_000)
    assert gov.limit == 0.0


def test_the_first_window_counts_from_the_first_chunk_not_from_the_probes_start(rig: Rig, gov: Governor) -> None:
    rig.now += 5.0  # the probe's spawn and the consumer's set-up
    window(rig, gov, 80_000)  # prompt: sets nothing
    rig.late = 0.010
    assert window(rig, gov, 80_000) == pytest.approx(DECREASE * 80_000, rel=0.01)


def test_a_rebuild_starts_at_its_start_rate_before_any_window(rig: Rig) -> None:
    gov = Governor(rig.reading, 0.002, rig.clock, start=20_000)
    assert gov.account(400) == 20_000  # the probe has said nothing yet: not full speed


def test_a_slow_start_rises_by_its_own_step_while_redis_is_prompt_and_goes_once_it_no_longer_binds(rig: Rig) -> None:
    gov = Governor(rig.reading, 0.002, rig.clock, start=20_000)
    assert window(rig, gov, 20_000) == pytest.approx(20_000 * SLOW_START)
    assert window(rig, gov, gov.limit) == pytest.approx(20_000 * SLOW_START**2)
    assert SLOW_START < LIFT  # a limit the rebuild reaches is raised, never lifted, while it starts
    unhindered = 40_000  # what this rebuild reaches at most: a limit past it by LIFT goes
    while gov.limit:
        window(rig, gov, min(gov.limit, unhindered))
    assert window(rig, gov, unhindered) == 0.0  # full speed from here, as without a start


def test_the_first_late_window_ends_the_slow_start(rig: Rig) -> None:
    gov = Governor(rig.reading, 0.002, rig.clock, start=20_000)
    limit = window(rig, gov, 20_000)
    rig.late = 0.010
    limit = window(rig, gov, limit)
    assert limit == pytest.approx(DECREASE * 20_000 * SLOW_START, rel=0.01)
    rig.late = 0.0
    assert window(rig, gov, limit) == pytest.approx(INCREASE * limit, rel=0.01)  # the usual step from here


def test_a_window_between_half_the_target_and_the_target_never_lifts(rig: Rig, gov: Governor, monkeypatch) -> None:
    monkeypatch.setattr(governor_module, "CREEP", 1.05)
    monkeypatch.setattr(governor_module, "CREEP_AFTER_S", 0.0)
    rig.late = 0.010
    limit = window(rig, gov, 80_000)
    rig.late = 0.0015  # Redis near the target while the rebuild's writes wait: the rate reached falls
    assert window(rig, gov, 0.3 * limit) == pytest.approx(1.05 * limit, rel=0.01)
    rig.late = 0.0
    assert window(rig, gov, 0.3 * limit) == 0.0  # a prompt window with the limit unused: lifted


def test_starting_a_window_short_of_late_still_raises_and_a_short_window_does_not_lift(rig: Rig) -> None:
    gov = Governor(rig.reading, 0.002, rig.clock, start=20_000)
    # Over half the target, not over it: held in a young rebuild's normal running, raised while starting.
    rig.late = 0.0015
    assert window(rig, gov, 20_000) == pytest.approx(20_000 * SLOW_START)
    rig.late = 0.0
    assert window(rig, gov, 0.8 * gov.limit) == pytest.approx(20_000 * SLOW_START**2)  # a chunk's jitter


def test_a_window_published_before_the_first_chunk_decides_nothing(rig: Rig) -> None:
    gov = Governor(rig.reading, 0.002, rig.clock, start=20_000)
    rig.window = 3  # the probe started first
    assert gov.account(400) == 20_000 and gov.account(400) == 20_000


def test_each_worker_starts_at_its_share() -> None:
    settings = Settings(rebuild_redis_delay_ms=2, rebuild_start_events_per_s=30_000)
    shared = [0.0, 0.0]
    assert governor(settings, shared, 1 / 3).limit == pytest.approx(10_000)  # type: ignore[union-attr]
    assert governor(replace(settings, rebuild_start_events_per_s=0), shared).limit == 0.0  # type: ignore[union-attr]


def test_a_negative_start_is_refused() -> None:
    with pytest.raises(ValueError, match="UMS_REBUILD_START_EVENTS_PER_S"):
        Settings(rebuild_start_events_per_s=-1)


def test_the_shared_array_reads_as_windows() -> None:
    shared = [0.0, 0.0]
    reading = reading_of(shared)
    assert reading() is None  # before the probe's first window
    shared[1], shared[0] = 0.004, 3.0
    assert reading() == (3, 0.004)


def test_a_probe_that_cannot_start_leaves_the_rebuild_ungoverned(monkeypatch, caplog) -> None:
    def refuse(self, settings) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(governor_module.Probe, "__init__", refuse)
    with probing(Settings(rebuild_redis_delay_ms=2)) as probe:
        assert probe is None
    assert "rebuild probe could not start" in caplog.text


def test_no_probe_means_no_governor() -> None:
    assert governor(Settings(), None) is None
    with probing(Settings(rebuild_redis_delay_ms=0)) as probe:
        assert probe is None


def test_a_negative_target_is_refused() -> None:
    with pytest.raises(ValueError, match="UMS_REBUILD_REDIS_DELAY_MS"):
        Settings(rebuild_redis_delay_ms=-1)


@pytest.mark.parametrize(
    ("late", "kept"), [(0.0021, 0.002 / 0.0021), (0.0025, 0.8), (0.004, DECREASE), (0.050, DECREASE)]
)
def test_a_late_window_cuts_in_proportion_to_how_late_and_by_decrease_at_most(
    rig: Rig, gov: Governor, late: float, kept: float
) -> None:
    """A window just over the target trims the limit; one at or past target / DECREASE cuts as deep as any."""
    window(rig, gov, 80_000)
    rig.late = late
    assert window(rig, gov, 80_000) == pytest.approx(kept * 80_000, rel=0.01)
