"""Liveness and readiness of the consumer, through one small JSON file the loop rewrites.

Liveness = the file's age (the loop itself advances it, so a stalled loop is seen,
and no dependency is checked). Readiness = partitions assigned and lag under a limit.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Health:
    assigned: int
    lag: int
    time: float
    waiting: str = ""  # the dependency the loop is retrying ("redis", ...); empty when flowing


class HealthFile:
    """Written by the loop at most once per `every_s` (atomically: write, then rename)."""

    def __init__(self, path: str, every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def write(self, assigned: int, lag: int, waiting: str = "") -> None:
        """Advance the heartbeat; the retry loop calls this too, so waiting on a dependency is alive."""
        self._last = time.monotonic()
        # One temporary file per process: two consumers given one path (a local run of several) must
        # not rename each other's file away (seen: FileNotFoundError killed one of them).
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(Health(assigned, lag, time.time(), waiting))))
        os.replace(tmp, self.path)


def check_live(path: str, max_age_s: float) -> str | None:
    """None when the heartbeat is fresh, else the reason it is not."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return f"no heartbeat file at {path}"
    return None if age <= max_age_s else f"heartbeat is {age:.0f} s old (limit {max_age_s:.0f} s)"


def check_ready(path: str, max_lag: int, max_age_s: float) -> str | None:
    """None when partitions are assigned and lag is under `max_lag`, else the reason."""
    problem = check_live(path, max_age_s)
    if problem:
        return problem
    try:
        health = Health(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        return f"unreadable health file: {exc}"
    if health.waiting:
        return f"waiting for {health.waiting}"
    if health.assigned == 0:
        return "no partitions assigned"
    if health.lag > max_lag:
        return f"lag {health.lag} is over {max_lag}"
    return None
