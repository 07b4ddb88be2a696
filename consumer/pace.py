"""A rebuild's pace: at most N events a second on average, so the readers keep their cores (issue 25).

On a host whose cores the API and Redis share with the rebuild, niceness orders only the
rebuild's own process; the work it makes Redis and the broker do is not niced. A pace bounds
that work too, at the price of a longer rebuild (docs/decisions.md "Readers first"). It decides
only *when* a batch (a Kafka replay's: each 400-event chunk) is written, never what: the
projection is the same at any pace.

A running rebuild's pace can be changed without stopping it (a stopped rebuild starts over):
`ums-find pace N` writes it next to the rebuild's claim, and every process of the rebuild reads
it at most once per POLL_S (`keyed_rate`). With a governor (consumer/governor.py) the rate is
the lower of the two: the operator's pace is a ceiling, the governor's limit follows the readers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from adapters.generations import Generations
from consumer.governor import Governor

log = logging.getLogger(__name__)

# Time a pace may bank while the rebuild runs slower than it (a slow batch, a paused process):
# more would let the next batches burst at full speed to catch up: the very load a pace is there to prevent.
CREDIT_S = 1.0
# How often a rebuild looks for a new pace, and the longest sleep between two looks: an operator
# who lowers or lifts it sees the change within this, whatever the batch size.
POLL_S = 1.0

RateSource = Callable[[], float | None]


class Pace:
    """Sleeps after each batch (or chunk) until the events so far have taken 1 / events_per_s seconds each."""

    def __init__(
        self,
        events_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        source: RateSource | None = None,
        governor: Governor | None = None,
    ) -> None:
        """`events_per_s` 0 (or less): no pace; `sleep` returns True when it was cut short by a stop
        (a stop event's wait); `source` gives a new rate (None: keep this one), read every POLL_S;
        `governor` may limit the rate further."""
        self.rate, self.clock, self.sleep, self.source = events_per_s, clock, sleep, source
        self.governor = governor
        self._limit = 0.0  # the governor's last limit (0: none)
        self._due: float | None = None
        self._polled: float | None = None

    def after(self, events: int) -> float:
        """Account for a batch of `events` just handed over; sleep if ahead of the pace. The seconds slept."""
        if events <= 0:
            return 0.0
        self._poll()
        if self.governor is not None:
            self._limit = self.governor.account(events)
        rate = self.effective()
        if rate <= 0:
            self._due = None
            return 0.0
        started = now = self.clock()
        start = now if self._due is None else max(self._due, now - CREDIT_S)
        due = start + events / rate
        while due > now:
            if self.sleep(min(due - now, POLL_S)):
                break  # stopping: the caller's next check says so
            old, now = self.effective(), self.clock()
            if self._poll():
                if self.effective() <= 0:  # lifted: nothing is owed any more
                    self._due = None
                    return now - started
                due = now + (due - now) * old / self.effective()  # what is still owed, at the new rate
        self._due = due
        return now - started

    def effective(self) -> float:
        """The rate in force: the lower of the pace and the governor's limit (0: neither limits)."""
        return min((r for r in (self.rate, self._limit) if r > 0), default=0.0)

    def _poll(self) -> bool:
        """Read the source if POLL_S has passed since the last read; True if the rate changed."""
        if self.source is None:
            return False
        now = self.clock()
        if self._polled is not None and now - self._polled < POLL_S:
            return False
        self._polled = now
        rate = self.source()
        if rate is None or rate == self.rate:
            return False
        log.info("rebuild pace now %s", f"{rate:.0f} events/s in this process" if rate > 0 else "unpaced")
        self.rate = rate
        return True


def keyed_rate(generations: Generations, generation: int, share: int = 1) -> RateSource:
    """The pace `ums-find pace` set for this rebuild's generation, split over `share` processes."""

    def read() -> float | None:
        try:
            rate = generations.pace(generation)
        except redis.RedisError as error:
            # The batch's own writes will meet the same failure and decide; the pace just stays.
            log.debug("could not read the rebuild's pace: %r", error)
            return None
        return None if rate is None else rate / share

    return read
