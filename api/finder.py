"""Finding a user: the projection first, then MySQL, with read-repair of what the projection missed."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from domain import Name, User, UserAdded, Version
from ums_find.mysql import MySQLError, MySQLUsers
from ums_find.settings import Settings
from ums_find.store import ProjectionStore

log = logging.getLogger(__name__)

PROJECTION = "projection"
MYSQL = "mysql"


class SourcesUnavailable(Exception):
    """Neither the projection nor MySQL could answer."""


@dataclass(frozen=True)
class Found:
    """The answer to a lookup: the user (None: unknown), who answered, and the generation read."""

    user: User | None
    source: str
    generation: int | None


class GenerationCache:
    """The live generation, re-read at most every `ttl_s` so a request costs one Redis call."""

    def __init__(self, store: ProjectionStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._value: int | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> int | None:
        now = time.monotonic()
        if now < self._expires:
            return self._value
        with self._lock:
            if now >= self._expires:
                self._value = self.store.live_generation()
                self._expires = now + self.ttl_s
            return self._value


class Finder:
    """Looks users up; clients are passed in."""

    def __init__(self, store: ProjectionStore, mysql: MySQLUsers, settings: Settings) -> None:
        self.store = store
        self.mysql = mysql
        self.generations = GenerationCache(store, settings.generation_cache_s)

    def find(self, name: Name) -> Found:
        generation: int | None = None
        try:
            generation = self.generations.get()
            if generation is not None:
                stored = self.store.get(name.canonical, generation)
                if stored is not None:
                    return Found(stored.user, PROJECTION, generation)
        except redis.RedisError as exc:
            log.warning("projection unavailable, asking MySQL: %r", exc)
            generation = None
        try:
            user = self.mysql.find(name.value)
        except MySQLError as exc:
            raise SourcesUnavailable(repr(exc)) from exc
        if user is not None and generation is not None:
            self._read_repair(user, generation)
        return Found(user, MYSQL, generation)

    def _read_repair(self, user: User, generation: int) -> None:
        # A user in MySQL but not in the projection lost its event (the AddService has
        # no outbox). Writing it through the fence heals that: a newer event still wins.
        try:
            self.store.apply([UserAdded(user, Version.from_mysql(user.since_ms))], generation)
        except redis.RedisError as exc:
            log.info("read-repair skipped: %r", exc)
