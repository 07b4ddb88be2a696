"""A small circuit breaker, so a dead dependency costs one timeout, not one per request.

Hand-written on purpose: pybreaker (the usual library) holds one lock for the whole
duration of every call, which would serialise all requests of a threaded worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitOpen(Exception):
    """The dependency failed recently; the call was not attempted."""


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; after `reset_s`, calls are tried again."""

    def __init__(
        self, name: str, threshold: int = 2, reset_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_s = reset_s
        self.clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.clock() < self._open_until

    def check(self) -> None:
        """Raise CircuitOpen while the breaker is open."""
        if self.is_open:
            raise CircuitOpen(self.name)

    def success(self) -> None:
        if self._failures:
            with self._lock:
                self._failures = 0
                self._open_until = 0.0

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open_until = self.clock() + self.reset_s
