"""A rebuild's pace: at most N events a second on average, so the readers keep their cores (issue 25).

On a host whose cores the API and Redis share with the rebuild, niceness orders only the
rebuild's own process; the work it makes Redis and the broker do is not niced. A pace bounds
that work too, at the price of a longer rebuild (docs/decisions.md "Readers first"). It decides
only *when* a batch is written, never what: the projection is the same at any pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Time a pace may bank while the rebuild runs slower than it (a slow batch, a paused process):
# more would let the next batches burst at full speed to catch up: the very load a pace is there to prevent.
CREDIT_S = 1.0


class Pace:
    """Sleeps after each batch until the events so far have taken 1 / events_per_s seconds each."""

    def __init__(
        self,
        events_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        """`events_per_s` 0 (or less): no pace; `sleep` may return early (a stop event's wait)."""
        self.rate, self.clock, self.sleep = events_per_s, clock, sleep
        self._due: float | None = None

    def after(self, events: int) -> float:
        """Account for a batch of `events` just handed over; sleep if ahead of the pace. The seconds slept."""
        if self.rate <= 0 or events <= 0:
            return 0.0
        now = self.clock()
        start = now if self._due is None else max(self._due, now - CREDIT_S)
        self._due = start + events / self.rate
        delay = self._due - now
        if delay <= 0:
            return 0.0
        self.sleep(delay)
        return delay
