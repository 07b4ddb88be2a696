"""The reconciler on fakeredis and a hand-written MySQL fake: what it reports and what it repairs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.generations import Generations
from consumer.reconcile import Reconciler
from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class FakeMySQL:
    """The slice of MySQLUsers the reconciler uses, over a dict keyed like the table's primary key."""

    def __init__(self, users: list[User]) -> None:
        self.rows = {u.name.canonical: u for u in users}

    def stream(self, chunk: int = 1000):
        users = list(self.rows.values())
        for start in range(0, len(users), chunk):
            yield users[start : start + chunk]

    def find(self, name: Name) -> User | None:
        return self.rows.get(name.canonical)

    def find_many(self, names: list[Name]) -> set[str]:
        return {n.canonical for n in names if n.canonical in self.rows}


def user(n: int, phone: int = 9_000_000_000, at: datetime = T0) -> User:
    return User(Name(f"Reconciled {n:04d}"), PhoneNumber(phone + n), at)


@pytest.fixture
def live(store) -> int:
    return Generations(store).ensure()[0].live


def test_a_whole_projection_has_no_drift(store, live):
    users = [user(n) for n in range(30)]
    store.apply([UserAdded(u, Version.from_mysql(u.since_ms)) for u in users], live)
    drift = Reconciler(store, FakeMySQL(users), live, chunk=7).run()
    assert (drift.checked_rows, drift.total) == (30, 0)


def test_missing_different_ahead_and_extra_are_counted_then_repaired(store, live):
    rows = [user(n) for n in range(10)]
    held = rows[2:]  # 0 and 1 missing
    held[0] = user(2, phone=9_100_000_000)  # different phone, same time: different
    held[1] = user(3, phone=9_200_000_000, at=T0 + timedelta(days=1))  # a later version: ahead
    extra = user(99)
    store.apply([UserAdded(u, Version.from_mysql(u.since_ms)) for u in [*held, extra]], live)
    store.apply([UserRemoved("Reconciled 0500", Version(1, 0, 0))], live)  # a tombstone is no user

    drift = Reconciler(store, FakeMySQL(rows), live, chunk=4).run(repair=True)
    assert (drift.missing, drift.different, drift.ahead, drift.extra) == (2, 1, 1, 1)
    assert drift.repaired == 5

    again = Reconciler(store, FakeMySQL(rows), live, chunk=4).run()
    assert again.total == 0
    assert store.get(user(3).name.canonical, live).user == rows[3]


def test_an_event_newer_than_the_first_read_is_kept(store, live):
    row = user(1)
    store.apply([UserAdded(user(1, phone=9_300_000_000), Version.from_mysql(row.since_ms))], live)
    mysql = FakeMySQL([row])
    reconciler = Reconciler(store, mysql, live)
    newer = user(1, phone=9_400_000_000, at=T0 + timedelta(hours=1))
    store.apply([UserAdded(newer, Version.from_mysql(newer.since_ms))], live)  # an event lands meanwhile
    mysql.rows[row.name.canonical] = newer
    reconciler.run(repair=True)
    assert store.get(row.name.canonical, live).user == newer


def test_an_unreadable_value_is_different_and_repair_replaces_it(store, live):
    rows = [user(n) for n in range(3)]
    store.apply([UserAdded(u, Version.from_mysql(u.since_ms)) for u in rows], live)
    damaged = store.key(live, rows[1].name.canonical)
    store.client.set(damaged, b"v9:a value of a later release")
    drift = Reconciler(store, FakeMySQL(rows), live).run()
    assert (drift.different, drift.total) == (1, 1)
    assert Reconciler(store, FakeMySQL(rows), live).run(repair=True).repaired == 1
    assert store.get(rows[1].name.canonical, live).user == rows[1]
    assert Reconciler(store, FakeMySQL(rows), live).run().total == 0
