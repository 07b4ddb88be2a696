"""Unit fixtures: settings -> app -> client, on fakeredis and an in-memory MySQL double."""

from __future__ import annotations

import fakeredis
import pytest

from adapters.mysql import MySQLError
from adapters.settings import Settings
from adapters.store import ProjectionStore
from api import create_app
from api.finder import Finder
from domain import Name, User, active_collation


class MemoryUsers:
    """The MySQLUsers interface over a dict; `down` makes every call fail like a dead server."""

    def __init__(self) -> None:
        self.rows: dict[str, User] = {}
        self.down = False
        self.calls = 0
        self.collation = ""  # empty: the configured one

    def find(self, name: Name) -> User | None:
        self.calls += 1
        if self.down:
            raise MySQLError("MySQL is down (test double)")
        return self.rows.get(name.canonical)

    def ping(self) -> None:
        if self.down:
            raise MySQLError("MySQL is down (test double)")

    def name_collation(self) -> str:
        return self.collation or active_collation()

    def save(self, user: User) -> None:
        self.rows[user.name.canonical] = user


@pytest.fixture
def settings():
    return Settings(key_prefix="unit", generation_cache_s=0.0)


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis()


@pytest.fixture
def store(redis_client, settings):
    return ProjectionStore(redis_client, settings.key_prefix)


@pytest.fixture
def mysql():
    return MemoryUsers()


@pytest.fixture
def app(settings, store, mysql):
    return create_app(settings, finder=Finder(store, mysql, settings))


@pytest.fixture
def client(app):
    return app.test_client()
