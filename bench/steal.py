"""CPU steal over a benchmark: the share of time the hypervisor gave this machine's cores to others.

On a shared virtual machine a burst of steal stalls every process at once for milliseconds, and
an open-loop round at 1,000 req/s reads it as a p99 above the SLO. A sampler thread reads
/proc/stat every second; each round keeps its window, so a capacity that differs between rounds
can be read next to the steal the round had.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import cpu_ticks

INTERVAL_S = 1.0
BURST_PCT = 5.0  # a second with more steal than this is counted as a burst


def steal_ticks() -> tuple[int, int]:
    """(steal, all) ticks of every core since boot, from the first line of /proc/stat."""
    ticks = cpu_ticks()
    return ticks[7], sum(ticks)


def share_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Steal as a percentage of all ticks between two readings (0 when no tick passed)."""
    ticks = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / ticks if ticks > 0 else 0.0


class StealSampler:
    """Samples steal every INTERVAL_S in a daemon thread: (wall-clock time at the end, percentage)."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steal-sampler", daemon=True)
        self._first = (0, 0)  # read by start()

    def _run(self) -> None:
        last = self._first
        while not self._stop.wait(self.interval_s):
            now = steal_ticks()
            self.samples.append((time.time(), share_pct(last, now)))
            last = now

    def start(self) -> StealSampler:
        self._first = steal_ticks()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval_s * 2)

    def __enter__(self) -> StealSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def between(self, start: float, end: float) -> dict[str, Any]:
        """Mean, max and seconds of burst among the samples that ended within [start, end]."""
        return summary([pct for at, pct in self.samples if start < at <= end])

    def whole(self) -> dict[str, Any]:
        return summary([pct for _, pct in self.samples])


def summary(shares: list[float]) -> dict[str, Any]:
    if not shares:
        return {"mean_pct": None, "max_pct": None, "burst_s": 0, "seconds": 0}
    return {
        "mean_pct": round(sum(shares) / len(shares), 2),
        "max_pct": round(max(shares), 1),
        "burst_s": sum(pct > BURST_PCT for pct in shares),
        "seconds": len(shares),
    }
