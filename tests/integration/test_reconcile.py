"""Reconcile finds exactly the drift injected between MySQL and the projection, and --repair fixes it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from adapters.clients import mysql_users
from adapters.generations import Generations
from adapters.values import format_value
from consumer.reconcile import Reconciler
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.conftest import CLUSTER_TOO
from tests.helpers import run_cli

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster

SINCE = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)


def test_reconcile_reports_and_repairs_exactly_the_injected_drift(settings, store, mysql_writer, name_tag):
    reader = mysql_users(settings)
    Generations(store).ensure()
    # Whatever else the table holds is projected first, so only our injected drift remains.
    Reconciler(store, reader, 1).run(repair=True)
    users = [User(Name(f"{name_tag} rec {i:03d}"), PhoneNumber(9_100_000_000 + i), SINCE) for i in range(50)]
    mysql_writer.upsert_many(users)
    store.apply([UserAdded(u, Version(u.since_ms, i % 6, i)) for i, u in enumerate(users)], 1)
    assert Reconciler(store, reader, 1).run().total == 0

    for user in users[:3]:  # lost from Redis
        store.client.delete(store.key(1, user.name.canonical))
    for i, user in enumerate(users[3:5], start=3):  # a phone altered in Redis, version kept
        wrong = UserAdded(User(user.name, PhoneNumber(9_999_999_999), SINCE), Version(user.since_ms, i % 6, i))
        store.client.set(store.key(1, user.name.canonical), format_value(wrong))
    ghost = User(Name(f"{name_tag} ghost user"), PhoneNumber(9_555_555_555), SINCE)  # not in MySQL
    store.apply([UserAdded(ghost, Version(ghost.since_ms, 0, 999))], 1)
    newer = User(users[5].name, PhoneNumber(9_888_888_888), datetime(2024, 1, 1, tzinfo=UTC))
    store.apply([UserAdded(newer, Version(newer.since_ms, 0, 1000))], 1)  # ahead: an event MySQL never saved
    pinned = User(users[6].name, PhoneNumber(9_777_777_777), datetime(2100, 1, 1, tzinfo=UTC))
    store.apply([UserAdded(pinned, Version(pinned.since_ms, 0, 1001))], 1)  # a version a bad clock pinned

    drift = Reconciler(store, reader, 1).run()
    assert (drift.missing, drift.different, drift.ahead, drift.extra) == (3, 2, 2, 1)
    assert sorted(drift.samples["missing"]) == sorted(u.name.value for u in users[:3])
    assert drift.samples["extra"] == [ghost.name.canonical]
    assert drift.ahead == 2

    result = run_cli(settings, "reconcile", "--repair")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["repaired"] == 8

    after = Reconciler(store, reader, 1).run()
    assert after.total == 0
    for user in users[:7]:  # missing, different and ahead: all MySQL's rows again
        assert store.get(user.name.canonical, 1).user == user
    assert store.get(ghost.name.canonical, 1) is None
    assert store.get(users[6].name.canonical, 1).version.time_ms == users[6].since_ms  # unpinned
    check = run_cli(settings, "reconcile")
    assert check.returncode == 0, check.stdout
    # Unpinned for good: an event sent after the row's save wins again.
    later = User(users[6].name, PhoneNumber(9_666_666_666), datetime(2024, 6, 1, tzinfo=UTC))
    assert store.apply([UserAdded(later, Version(later.since_ms, 0, 1002))], 1) == 1
    reader.pool.close()
