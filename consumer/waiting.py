"""The consume loop's calls to Redis: retried until answered, the heartbeat saying what it waits for."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from adapters.diagnose import FULL, HINTS, redis_cause, redis_full
from adapters.eviction import memory_note
from consumer.health import HealthFile
from consumer.metrics import ConsumerMetrics
from consumer.retry import retry_until_done

log = logging.getLogger(__name__)
T = TypeVar("T")
FULL_REPEAT_S = 60.0


class Waits:
    """Retries a dependency's calls and says, once per cause, a misconfiguration only a fix helps."""

    def __init__(
        self,
        client: redis.Redis,
        redis_url: str,
        metrics: ConsumerMetrics,
        health: HealthFile,
        assigned: Callable[[], int],
        stop: threading.Event,
    ) -> None:
        """`client`: the projection's (its memory is named when it is full); `assigned`: for the heartbeat."""
        self.client, self.redis_url, self.metrics = client, redis_url, metrics
        self.health, self.assigned, self.stop = health, assigned, stop
        self._misconfigured = ""  # the Redis misconfiguration already logged
        self._full_said = -FULL_REPEAT_S  # when "Redis is full" was last logged (monotonic)

    def redis(self, operation: Callable[[], T], what: str, *also: type[BaseException]) -> T:
        """Retry until Redis answers (backoff; the heartbeat says we are waiting, not stuck)."""
        done = retry_until_done(operation, (redis.RedisError, *also), self.stop, what, on_retry=self.on_retry("redis"))
        self._misconfigured = ""  # answered: a cause that comes back is said again
        return done

    def on_retry(self, dependency: str) -> Callable[[BaseException], None]:
        """What each failed try of a call to `dependency` does: count it, say why, write the heartbeat."""

        def on_retry(exc: BaseException) -> None:
            waiting = dependency
            if dependency == "redis":
                self.metrics.redis_retries.inc()
                cause = redis_cause(exc, self.redis_url) or redis_full(exc)
                if cause:
                    waiting = f"redis: {cause}"
                    self._say_misconfigured(cause, exc)
            # Alive and waiting: liveness holds, readiness says what we wait for.
            self.health.write(self.assigned(), -1, waiting=waiting)

        return on_retry

    def _say_misconfigured(self, cause: str, exc: BaseException) -> None:
        """One error line per cause: retrying goes on (nothing is stored meanwhile), but only a fix helps."""
        if cause == self._misconfigured:
            return
        note = ""
        if cause == FULL:
            # A Redis hovering at maxmemory refuses and accepts by turns: said once a minute at most
            # (an episode still going when the minute is up is said then).
            if time.monotonic() - self._full_said < FULL_REPEAT_S:
                return
            self._full_said = time.monotonic()
            note = f" ({memory_note(self.client)})"
        self._misconfigured = cause
        log.error("redis: %s%s; %s (%s)", cause, note, HINTS.get(cause, HINTS["redis"]), type(exc).__name__)
