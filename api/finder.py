"""Finding a user: the projection first, then MySQL, with read-repair of what the projection missed."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from cachetools import TTLCache

from adapters.mysql import MySQLError, MySQLUsers, timed_out
from adapters.settings import Settings
from adapters.store import ProjectionStore
from adapters.values import Stored
from api.breaker import CircuitBreaker, CircuitOpen
from domain import Name, User, UserAdded, Version, active_collation

log = logging.getLogger(__name__)

PROJECTION = "projection"
MYSQL = "mysql"
UNKNOWN_CACHE = "unknown-cache"


class Reads(Protocol):
    """Where users' values are read: the store itself, its read cache, or direct reads."""

    def get(self, canonical: str, generation: int) -> Stored | None: ...


class SourcesUnavailable(Exception):
    """Neither the projection nor MySQL could answer."""


@dataclass(frozen=True)
class Found:
    """The answer to a lookup: the user (None: unknown), who answered, and the generation read."""

    user: User | None
    source: str
    generation: int | None


class GenerationCache:
    """The live generation, re-read at most every `ttl_s` so a request costs one Redis call.

    No lock is held across the Redis call: while one request refreshes, the others use
    the value it is replacing, and with Redis hung each request waits only its own timeout.
    """

    def __init__(self, store: ProjectionStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._value: int | None = None
        self._loaded = False
        self._expires = 0.0
        self._refreshing = threading.Lock()

    def get(self) -> int | None:
        if time.monotonic() < self._expires:
            return self._value
        if not self._refreshing.acquire(blocking=False):
            if self._loaded:
                return self._value  # another request is refreshing it
            return self.store.live_generation()
        try:
            value = self.store.live_generation()
            self._value, self._loaded = value, True
            self._expires = time.monotonic() + self.ttl_s
            return value
        finally:
            self._refreshing.release()


class Finder:
    """Looks users up; clients are passed in. Thread-safe (one per gunicorn worker)."""

    def __init__(
        self, store: ProjectionStore, mysql: MySQLUsers, settings: Settings, reads: Reads | None = None
    ) -> None:
        self.store = store
        # Users' values through the read cache or direct reads when given (api._finder).
        self.reads: Reads = reads or store
        self.mysql = mysql
        self.generations = GenerationCache(store, settings.generation_cache_s)
        # Only hangs (timeouts) open a breaker: a refused connection costs nothing, and
        # skipping the dependency would turn requests away after it has come back.
        self.redis_breaker = CircuitBreaker("redis", threshold=2, reset_s=settings.breaker_reset_s)
        self.mysql_breaker = CircuitBreaker("mysql", threshold=2, reset_s=settings.breaker_reset_s)
        # Names MySQL recently did not know: a flood of random names cannot hammer it.
        self._unknown: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=settings.negative_cache_s)
        self._unknown_lock = threading.Lock()
        self._collation_confirmed = False
        self._collation_absent_logged = False
        # Off unless UMS_READ_REPAIR: repairing needs a Redis user that may write (docs/security.md).
        self.read_repair = settings.read_repair
        self._warned: dict[str, float] = {}

    def find(self, name: Name) -> Found:
        generation, found = self.from_projection(name)
        if found is not None:
            return found
        if self._known_unknown(name.canonical):
            return Found(None, UNKNOWN_CACHE, generation)
        user = self.from_mysql(name)
        if user is None:
            with self._unknown_lock:
                self._unknown[name.canonical] = True
        elif generation is not None and self.read_repair:
            self._read_repair(user, generation)
        return Found(user, MYSQL, generation)

    def from_projection(self, name: Name) -> tuple[int | None, Found | None]:
        """The live generation (None: Redis did not answer) and the projection's answer (None: a miss)."""
        try:
            self.redis_breaker.check()
            generation = self.generations.get()
            stored = self.reads.get(name.canonical, generation) if generation is not None else None
        except (redis.RedisError, CircuitOpen) as exc:
            if isinstance(exc, redis.TimeoutError):
                self.redis_breaker.failure()
            if isinstance(exc, redis.RedisError) and self._should_warn(PROJECTION):
                log.warning("projection unavailable, asking MySQL: %r", exc)
            return None, None
        except ValueError as exc:
            # A value in neither format this release reads (a later release's, or damaged):
            # MySQL answers, and nothing is written back over a value this release cannot judge.
            if self._should_warn(PROJECTION):
                log.warning("unreadable projection value for %r, asking MySQL: %r", name.canonical, exc)
            return None, None
        self.redis_breaker.success()
        if stored is None:
            return generation, None
        return generation, Found(stored.user, PROJECTION, generation)

    def from_mysql(self, name: Name) -> User | None:
        """MySQL's answer, behind its breaker; SourcesUnavailable when it cannot give one."""
        try:
            self.mysql_breaker.check()
            user = self.mysql.find(name)
        except (MySQLError, CircuitOpen) as exc:
            if isinstance(exc, MySQLError) and timed_out(exc):
                self.mysql_breaker.failure()
            if isinstance(exc, MySQLError) and self._should_warn(MYSQL):
                log.warning("MySQL unavailable: %r", exc)
            raise SourcesUnavailable(repr(exc)) from exc
        self.mysql_breaker.success()
        return user

    def _should_warn(self, source: str) -> bool:
        """At most one warning per source per second: an outage must not write a line per request."""
        now = time.monotonic()
        if now - self._warned.get(source, -1.0) < 1.0:
            return False
        self._warned[source] = now  # a race only costs a duplicate line
        return True

    def _known_unknown(self, canonical: str) -> bool:
        with self._unknown_lock:
            return canonical in self._unknown

    def forget_unknown(self, canonical: str) -> None:
        """MySQL has just returned this name: ordinary reads stop calling it unknown."""
        with self._unknown_lock:
            self._unknown.pop(canonical, None)

    def _read_repair(self, user: User, generation: int) -> None:
        # A user in MySQL but not in the projection lost its event (the AddService has
        # no outbox). Writing it through the fence heals that: a newer event still wins.
        try:
            self.store.apply([UserAdded(user, Version.from_mysql(user.since_ms))], generation)
        except redis.RedisError as exc:
            # DEBUG: one per fallback read while Redis refuses writes, which readiness and the
            # Redis errors report already.
            log.debug("read-repair skipped: %r", exc)

    def readiness(self) -> dict[str, bool]:
        """Which sources can answer right now (each checked with its short timeout)."""
        status = {PROJECTION: False, MYSQL: False}
        with contextlib.suppress(redis.RedisError):
            status[PROJECTION] = self.store.ping()
        with contextlib.suppress(MySQLError):
            self.mysql.ping()
            status[MYSQL] = True
        return status

    def collation_mismatch(self) -> str | None:
        """What `ums_users.name` is collated with, when that is not the configured collation.

        Checked until MySQL has confirmed it once: with another collation the two paths
        would disagree about which names are one user, so the API must not become ready.
        """
        if self._collation_confirmed:
            return None
        try:
            actual = self.mysql.name_collation()
        except MySQLError:
            return None  # MySQL unreachable: readiness says so; check again next time
        if not actual:
            # No column to read yet (the AddService creates its table on a fresh stack, or
            # the grant is missing): nothing is confirmed, so the next check asks again.
            if not self._collation_absent_logged:
                self._collation_absent_logged = True
                log.warning("ums_users.name is not visible yet: its collation is checked again until it is")
            return None
        expected = active_collation()
        if actual != expected:
            log.error(
                "ums_users.name is collated %s but UMS_NAME_COLLATION is %s: names would match differently "
                "in Redis and MySQL; set UMS_NAME_COLLATION=%s and run `ums-find replay`",
                actual,
                expected,
                actual,
            )
            return actual
        self._collation_confirmed = True
        return None
