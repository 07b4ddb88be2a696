"""The broker, not the consumer, refuses far-future timestamps: the bound `ums-find topics` sets (real Kafka)."""

from __future__ import annotations

import logging
import time

import requests
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from adapters.clients import kafka_admin, kafka_producer
from adapters.settings import Settings
from adapters.topic_bound import (
    AFTER_MAX,
    GUARDED,
    UNGUARDED,
    TimestampBound,
    check_bound,
    read_bound,
    topic_config,
)
from tests.helpers import free_port, run_cli, unique, wait_until

MINUTE_MS = 60_000


def bound_of(admin: AdminClient, topic: str) -> TimestampBound:
    """The topic's bound, once the broker knows the topic (it may lag the creation by a moment)."""

    def read() -> TimestampBound | None:
        try:
            return read_bound(admin, topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return None

    return wait_until(read, 20, f"the broker to know {topic}")


def produce_at(settings: Settings, timestamp_ms: int) -> str | None:
    """Produce one event with this CreateTime; the delivery error's name, or None when acknowledged."""
    producer = kafka_producer(settings)
    reports: list[str | None] = []
    producer.produce(
        settings.topic,
        value=b'{"name": "Krishna Mohan", "phone": 9731423166}',
        timestamp=timestamp_ms,
        on_delivery=lambda err, _: reports.append(err.name() if err else None),
    )
    producer.flush(30)
    assert len(reports) == 1, "no delivery report"
    return reports[0]


def unbounded_topic(settings: Settings, admin: AdminClient, config: dict[str, str] | None = None) -> Settings:
    """A topic made without `ums-find topics` (the broker's defaults, or `config`)."""
    other = Settings(**{**settings.__dict__, "topic": unique("ums-test")})
    admin.create_topics([NewTopic(other.topic, 2, config=config or {})])[other.topic].result(30)
    bound_of(admin, other.topic)
    return other


def test_a_topic_made_by_ums_find_topics_refuses_a_timestamp_ten_minutes_ahead(settings):
    # The `settings` fixture made the topic with ensure_topics, what `ums-find topics` runs.
    assert bound_of(kafka_admin(settings), settings.topic).after_max_ms == settings.max_skew_ms == 300_000
    now = int(time.time() * 1000)
    assert produce_at(settings, now + 10 * MINUTE_MS) == "INVALID_TIMESTAMP"
    assert produce_at(settings, now + MINUTE_MS) is None  # within the bound: a normal clock difference
    assert produce_at(settings, now - 7 * 24 * 60 * MINUTE_MS) is None  # behind is no threat: it loses


def test_ums_find_topics_tightens_an_existing_topic_and_keeps_a_tighter_one(settings):
    admin = kafka_admin(settings)
    loose = unbounded_topic(settings, admin)
    tight = unbounded_topic(settings, admin, topic_config({}, MINUTE_MS))
    assert bound_of(admin, loose.topic).after_max_ms == 3_600_000  # Kafka 4's default: an hour ahead
    for topic in (loose, tight):
        result = run_cli(topic, "topics")
        assert result.returncode == 0, result.stderr
    assert bound_of(admin, loose.topic).after_max_ms == 300_000
    assert bound_of(admin, tight.topic).after_max_ms == MINUTE_MS
    assert produce_at(loose, int(time.time() * 1000) + 10 * MINUTE_MS) == "INVALID_TIMESTAMP"


def test_the_consumer_warns_about_a_missing_bound_and_consumes_anyway(settings, run_consumer, store, caplog):
    admin = kafka_admin(settings)
    loose = unbounded_topic(settings, admin)
    bound_of(admin, settings.topic)
    assert check_bound(admin, settings.topic, settings.max_skew_ms) == GUARDED
    with caplog.at_level(logging.WARNING, logger="adapters.topic_bound"):
        assert check_bound(admin, loose.topic, loose.max_skew_ms) == UNGUARDED
    assert f"{AFTER_MAX}=3600000 is looser" in caplog.text
    caplog.clear()

    # The consumer's start-up says so too, then projects a message 10 minutes ahead like any other.
    ahead = int(time.time() * 1000) + 10 * MINUTE_MS
    assert produce_at(loose, ahead) is None
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="adapters.topic_bound"):
        run_consumer(Settings(**{**loose.__dict__, "metrics_port": port}))
        wait_until(lambda: store.get("krishna mohan", 1), 30, "the event 10 minutes ahead in the projection")
        # The check runs beside consuming (consumer/main.py): poll for its report, logged before it.
        wait_until(
            lambda: (
                "\nums_consumer_timestamp_guard 0.0\n"
                in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            ),
            30,
            "the consumer's timestamp_guard gauge at 0",
        )
    assert store.get("krishna mohan", 1).version.time_ms == ahead
    # The bound's line, once. (The consumer also names the dead-letter topic nobody made: consumer/dlq.py.)
    lines = [r.levelname for r in caplog.records if r.name == "adapters.topic_bound" and loose.topic in r.getMessage()]
    assert lines == ["WARNING"]
