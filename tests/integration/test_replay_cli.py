"""`ums-find replay` / `backfill` as operators run them: dry run, the lock, a MySQL backfill."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from confluent_kafka import Producer

from adapters.clients import kafka_admin, kafka_producer
from adapters.generations import Generations
from adapters.lineage import TopicRecord, topic_id
from devtools.addservice import event_value
from domain import Name, PhoneNumber, User
from tests.conftest import CLUSTER_TOO
from tests.helpers import run_cli, wait_until

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster


cli = run_cli


def publish(producer: Producer, topic: str, users):
    for user in users:
        producer.produce(topic, value=event_value(user))
    assert producer.flush(10) == 0


def test_dry_run_changes_nothing(settings, store, name_tag):
    producer = kafka_producer(settings)
    publish(
        producer,
        settings.topic,
        [User(Name(f"{name_tag} dry {i}"), PhoneNumber(9_000_000_000 + i), datetime.now(UTC)) for i in range(30)],
    )
    Generations(store).ensure()
    before = store.client.get(store.pointer_key)
    result = cli(settings, "replay", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would build generation 2" in result.stdout
    assert "Kafka events: 30" in result.stdout
    assert store.client.get(store.pointer_key) == before
    assert Generations(store).read().building is None


def test_a_second_rebuild_is_refused(settings, store):
    generations = Generations(store)
    generations.ensure()
    target, claim = generations.start(lease_ms=60_000)
    result = cli(settings, "replay")
    assert result.returncode == 2
    assert "already running" in result.stderr
    assert store.live_generation() == 1
    assert generations.read().building == target  # the running rebuild's claim is untouched
    assert generations.abandon(claim)


def test_backfill_from_mysql_then_kafka_on_top(settings, store, mysql_writer, name_tag, run_consumer):
    old = [
        User(Name(f"{name_tag} old {i:03d}"), PhoneNumber(9_200_000_000 + i), datetime(2020, 1, 1, tzinfo=UTC))
        for i in range(40)
    ]
    mysql_writer.upsert_many(old)  # their events expired from the topic long ago
    run_consumer()
    wait_until(lambda: store.live_generation() is not None, 20, "the consumer to start generation 1")

    result = cli(settings, "backfill", "--from-mysql")
    assert result.returncode == 0, result.stderr
    assert store.live_generation() == 2
    for user in old:
        assert store.get(user.name.canonical, 2).user == user
    # Stamped with the topic it was built beside, which the live consumer reads on in it.
    topic = topic_id(kafka_admin(settings), settings.topic)
    assert topic is not None and TopicRecord(Generations(store)).read(2) == topic

    fresh = User(Name(f"{name_tag} fresh one"), PhoneNumber(9_300_000_000), datetime.now(UTC))
    publish(kafka_producer(settings), settings.topic, [fresh])
    wait_until(lambda: (s := store.get(fresh.name.canonical, 2)) and s.user == fresh, 20, "the new event in gen 2")
    assert json.loads(cli(settings, "reconcile").stdout)["missing"] == 0


def test_show_decodes_either_format_and_says_when_nothing_is_held(settings, store):
    from dataclasses import replace

    from adapters.store import ProjectionStore
    from domain import UserAdded, UserRemoved, Version

    Generations(store).ensure()
    generation = store.live_generation()
    users = {
        fmt: User(Name(f"Show {fmt} User"), PhoneNumber(9_100_000_001), datetime(2024, 5, 1, tzinfo=UTC))
        for fmt in ("compact", "text")
    }
    for fmt, user in users.items():
        writer = ProjectionStore(store.client, settings.key_prefix, fmt)
        writer.apply([UserAdded(user, Version(user.since_ms + 5, 2, 77))], generation)
        result = cli(replace(settings, value_format=fmt), "show", user.name.value.upper())
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["format"] == fmt and shown["generation"] == generation
        assert shown["version"] == {"time_ms": user.since_ms + 5, "partition": 2, "offset": 77}
        assert shown["held"] == {"name": user.name.value, "phone": 9_100_000_001, "since_ms": user.since_ms}
    store.apply([UserRemoved("Show text User", Version(users["text"].since_ms + 9, 2, 78))], generation)
    assert json.loads(cli(settings, "show", "Show text User").stdout)["held"] == "removed"
    missing = cli(settings, "show", "Nobody Here At All")
    assert missing.returncode == 1 and json.loads(missing.stdout)["held"] is None
