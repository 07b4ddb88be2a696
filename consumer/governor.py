"""Readers first, found by measurement: a rebuild slows down while Redis answers a reader late (issue 25).

A fixed pace (consumer/pace.py) is right only for the cores it was measured on. The governor
finds the rate instead. A small probe process beside the rebuild times a PING every
PROBE_EVERY_S on a connection of its own, as a reader's GET would meet it: behind Redis's work
(the rebuild's writes, the readers') and behind the wait for a core, Redis's and the caller's
own. A separate process, not a thread or the rebuild's loop: a probe sent by the rebuild's
loop frees that loop's core for Redis at the very moment it measures, and a thread's answer
waits for the decoder's GIL. Every DECIDE_S the probe publishes its probes' 90th percentile
less the fastest probe seen (the network's own round trip); the governor compares that delay
with the target: above it the rate limit falls in proportion (to target / delay of the rate
reached: a window barely late trims it), by DECREASE at most in one window; below half of it
the limit rises by INCREASE; between the two it holds for the rebuild's first CREEP_AFTER_S and
then creeps up by CREEP (it slows a long rebuild's walk down; from the start it let a short one run fast
enough to cost the readers more than 5 ms: docs/decisions.md "A creep", "A creep after a
minute"), and a limit well above what the rebuild reaches unhindered is lifted
(multiplicative steps both ways, as TCP shares a link). Like TCP, a rebuild does not start at
full speed: it starts at UMS_REBUILD_START_EVENTS_PER_S and rises by SLOW_START a window until
the first late probe (beside no readers it is at full speed within seconds): at full speed from
its first chunk, a rebuild had taken the readers' core for the second or two before its probe's
first windows could slow it (docs/decisions.md "A slow start"). Like a pace, it decides only
*when* a chunk is written, never what: the projection is the same at any rate.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from adapters.clients import Role, redis_client
from adapters.settings import Settings
from consumer.orphans import die_with

log = logging.getLogger(__name__)

DECIDE_S = 0.5  # long enough for ~50 probes, short enough to back off within a second
PROBE_EVERY_S = 0.01  # 100 probes a second: one PING costs Redis ~2 us
# The deepest cut one late window makes; a window less late than target / DECREASE (2.86 ms at
# the 2 ms default) cuts by target / delay instead. Until 2026-12-06 every late window cut by this much:
# in the 10M growth run a 2.01 ms window cut as deep as a 10 ms one, and while Redis rehashed its
# main table (16.7M buckets, a minute, late windows whatever the rebuild's rate) those cuts held
# the rebuild at 10-60k events/s (docs/decisions.md "A cut in proportion").
DECREASE = 0.7
INCREASE = 1.15
# Between half the target and the target, once the rebuild is CREEP_AFTER_S old (before, and at 1, the limit
# holds there). From the start (docs/decisions.md "A creep"), 1.05 took a 4M-event rebuild beside readers from
# 294 s to 173 s within + 5 ms, but a 1M-event one to 44-54k events/s and the readers to + 7.3 ms (+ 3.8 without).
# Waiting a minute ("A creep after a minute"): 4M events 181 s -> 101 s (medians of 3 rounds), the readers'
# p99 during the rebuild the same (6.14 and 6.12 ms), and a rebuild shorter than the wait (1M events here) untouched.
CREEP = 1.05
CREEP_AFTER_S = 60.0  # from the first chunk this governor saw (per replay phase, per worker)
LIFT = 1.5  # a limit this far above the rate reached is not limiting anything: lifted
SLOW_START = 1.4  # per prompt window until the first late one; under LIFT, so a limit that binds rises
# A rebuild always ends, however busy the host: 10M users' 25M events take ~7 h at this rate.
FLOOR_EVENTS_PER_S = 1_000.0
STALE_S = 10 * DECIDE_S  # no window for this long: the probe is gone, its last limit is lifted
PR_SET_NAME = 15  # linux/prctl.h
PROBE_NAME = b"rebuild-probe"

Reading = Callable[[], "tuple[int, float] | None"]  # (window number, delay in s) of the last window


class Governor:
    """An events-per-second limit for one rebuild process, from the delay its probe publishes."""

    def __init__(
        self, reading: Reading, target_s: float, clock: Callable[[], float] = time.monotonic, start: float = 0.0
    ) -> None:
        """`reading` gives the probe's last window (number, delay); a new number is a new decision;
        `start`: the limit before the first window (0: none, full speed from the first chunk)."""
        self.reading, self.target_s, self.clock = reading, target_s, clock
        self.limit = start  # events/s; 0: not limiting
        self._starting = start > 0  # rising by SLOW_START until a window is late
        self._window = 0
        self._since: float | None = None  # since the first chunk (not the probe's start-up) or the last decision
        self._began = 0.0  # the first chunk
        self._events = 0

    def account(self, events: int) -> float:
        """Count events handed over; at each new window from the probe, decide the limit. The limit (0: none)."""
        now = self.clock()
        if self._since is None:
            self._since = self._began = now
            first = self.reading()
            if first is not None:  # a window from before the first chunk says nothing of the rebuild's rate
                self._window = first[0]
        self._events += events
        last = self.reading()
        if last is None or last[0] == self._window:
            if self.limit and now - self._since > STALE_S:
                # A probe that stopped publishing must not hold a rebuild at the floor for hours.
                log.warning("rebuild probe silent for %.0f s: back to full speed", now - self._since)
                self.limit, self._events, self._since, self._starting = 0.0, 0, now, False
            return self.limit
        reached = self._events / max(now - self._since, 1e-6)
        self._window, self._events, self._since = last[0], 0, now
        self._decide(last[1], reached, CREEP if now - self._began >= CREEP_AFTER_S else 1.0)
        return self.limit

    def _decide(self, delay: float, reached: float, creep: float) -> None:
        before, starting = self.limit, self._starting
        if delay > self.target_s:
            start = min(self.limit, reached) if self.limit else reached
            self.limit = max(FLOOR_EVENTS_PER_S, max(DECREASE, self.target_s / delay) * start)
            self._starting = False
        elif self.limit:
            # Starting, any window that is not late raises the limit; it goes once the rebuild fell
            # well short of the limit in force (a chunk's jitter must not end a slow start at once).
            prompt = delay < self.target_s / 2
            self.limit *= SLOW_START if starting else INCREASE if prompt else creep
            # Lifted only after a prompt window: in the band Redis is near the target, and a rate that
            # fell short there may be the rebuild's own writes waiting in a stall, not a limit unused.
            if (starting or prompt) and (before if starting else self.limit) > LIFT * reached:
                self.limit, self._starting = 0.0, False
        log.debug("probe %.2f ms late: limit %.0f events/s (reached %.0f)", delay * 1000, self.limit, reached)
        if delay > self.target_s and (not before or starting):
            what = f"slowed to {self.limit:.0f} events/s"
        elif before and not self.limit:
            what = "slow start over, at full speed" if starting else "back to full speed"
        else:
            return  # the usual steps: debug only
        log.info("rebuild %s: Redis answered a probe %.1f ms late (target %.1f ms)", what, delay * 1000,
                 self.target_s * 1000)  # fmt: skip


def delay_of(probes: list[float], base: float) -> float:
    """The 90th percentile of a window's probes less the fastest probe seen: the wait a reader meets."""
    ordered = sorted(probes)
    return ordered[int(0.9 * (len(ordered) - 1))] - base


def probe_loop(settings: Settings, shared: Any, parent: int) -> None:
    """The probe process: PING every PROBE_EVERY_S, publish (window number, delay) every DECIDE_S."""
    die_with(parent)
    with contextlib.suppress(OSError, AttributeError):  # Linux only
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, PROBE_NAME)  # `ps -o comm` tells it from the workers
    client = redis_client(settings, Role.ADMIN)
    probes: list[float] = []
    base = float("inf")
    window, since = 0, time.monotonic()
    while os.getppid() == parent:
        start = time.monotonic()
        try:
            client.ping()
        except redis.TimeoutError:
            probes.append(time.monotonic() - start)  # as late as it gets: a sample, not a gap
        except redis.RedisError:
            pass  # not a sample: the rebuild's writes meet the failure and decide
        else:
            took = time.monotonic() - start
            probes.append(took)
            base = min(base, took)
        now = time.monotonic()
        if now - since >= DECIDE_S and probes:
            window += 1
            # No lock (a probe killed while holding one would hang its readers): the delay is
            # written before the window number, so a reader that sees a new number sees its delay.
            shared[1] = delay_of(probes, base if base < float("inf") else 0.0)
            shared[0] = window
            probes, since = [], now
        time.sleep(max(0.0, start + PROBE_EVERY_S - time.monotonic()))


class Probe:
    """One rebuild's probe process (spawned: the rebuild holds threads and librdkafka state, no fork).

    Started by the rebuild's own process, not by its replay workers (a daemonic worker may not
    start processes); the workers read the same windows through `shared`.
    """

    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.shared = ctx.RawArray("d", 2)  # window number, delay (s)
        self._process = ctx.Process(
            target=probe_loop, args=(settings, self.shared, os.getpid()), name="rebuild-probe", daemon=True
        )
        self._process.start()

    def close(self) -> None:
        self._process.kill()
        self._process.join(5)


def reading_of(shared: Any) -> Reading:
    """The probe's last window from its shared array: (number, delay in s), None before the first."""

    def reading() -> tuple[int, float] | None:
        window = int(shared[0])
        return (window, float(shared[1])) if window else None

    return reading


@contextlib.contextmanager
def probing(settings: Settings) -> Iterator[Any]:
    """The rebuild's probe, running for the block: its shared windows (None when UMS_REBUILD_REDIS_DELAY_MS is 0)."""
    probe = None
    if settings.rebuild_redis_delay_ms > 0:
        try:
            probe = Probe(settings)
        except OSError as error:  # no /dev/shm, no process slots: a rebuild is worth more than its governor
            log.warning("rebuild probe could not start (%r): no governor for this rebuild", error)
    try:
        yield None if probe is None else probe.shared
    finally:
        if probe is not None:
            probe.close()


def governor(settings: Settings, shared: Any, share: float = 1.0) -> Governor | None:
    """A governor reading the probe's windows from `shared` (None without a probe), starting at
    `share` of UMS_REBUILD_START_EVENTS_PER_S (one of several workers starts at its part)."""
    if shared is None:
        return None
    start = settings.rebuild_start_events_per_s * share
    return Governor(reading_of(shared), settings.rebuild_redis_delay_ms / 1000, start=start)
