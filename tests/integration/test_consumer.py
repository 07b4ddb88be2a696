"""The consumer against real Kafka and Redis."""

import json
import time

from confluent_kafka import Consumer, TopicPartition

from adapters.generations import Generations
from adapters.kafka import consumer_config
from tests.conftest import CLUSTER_TOO
from tests.helpers import wait_until

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster


def produce(producer, topic, values, key=None, timestamp=0):
    for value in values:
        producer.produce(topic, key=key, value=value, timestamp=timestamp)
    assert producer.flush(10) == 0


def event(name, phone, since):
    return json.dumps({"name": name, "phone": phone, "since": since}).encode()


def test_events_are_projected_newest_wins(settings, producer, store, run_consumer, name_tag):
    names = [f"{name_tag} user {i:03d}" for i in range(200)]
    # Each user twice, the newer event (by its Kafka timestamp, the version's clock) first:
    # the older one, consumed after it, must not win.
    now = int(time.time() * 1000)
    produce(
        producer, settings.topic, [event(n, 9_000_000_000 + i, 2_000 + i) for i, n in enumerate(names)], timestamp=now
    )
    produce(producer, settings.topic, [event(n, 9_100_000_000, 1_000) for n in names], timestamp=now - 60_000)
    run_consumer()

    # Until the saved positions cover both batches: the two may sit on different partitions, and a
    # user present is not yet final while the partition with its newer event is still unread.
    reader = Consumer(consumer_config(settings, **{"group.id": f"{name_tag}-watermarks"}))
    ends = {p: reader.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10)[1] for p in range(6)}
    reader.close()

    def consumed():
        generation = store.live_generation()
        positions = Generations(store).all_positions(generation) if generation else {}
        return generation and all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0)

    wait_until(consumed, 20, "the consumer to save positions past both batches")
    generation = store.live_generation()
    phones = {n: store.get(n.lower(), generation).user.phone.value for n in names}
    assert phones == {n: 9_000_000_000 + i for i, n in enumerate(names)}


def test_poison_goes_to_the_dlq_with_headers_and_the_stream_goes_on(settings, producer, store, run_consumer, name_tag):
    good = f"{name_tag} good one"
    produce(producer, settings.topic, [b"{oops", event("short", 9731423166, 1), None])
    produce(producer, settings.topic, [event(good, 9731423166, 5_000)])
    run_consumer()
    wait_until(lambda: store.live_generation() and store.get(good.lower(), store.live_generation()), 20, "good event")

    dlq = Consumer(consumer_config(settings, **{"group.id": settings.group_id + "-dlq-reader"}))
    dlq.assign([TopicPartition(settings.dead_letter_topic, 0, 0)])
    letters = []
    wait_until(
        lambda: letters.extend(m for m in dlq.consume(10, 0.5) if not m.error()) or len(letters) >= 3,
        20,
        "three dead letters",
    )
    dlq.close()
    reasons = sorted(dict(m.headers())["ums.error.class"].decode() for m in letters)
    assert reasons == ["invalid-json", "invalid-name", "null-value"]
    for letter in letters:
        headers = dict(letter.headers())
        assert headers["ums.original.topic"].decode() == settings.topic
        assert int(headers["ums.original.offset"]) >= 0


def test_offsets_are_committed_after_the_write(settings, producer, store, run_consumer, name_tag):
    names = [f"{name_tag} commit {i:03d}" for i in range(50)]
    produce(producer, settings.topic, [event(n, 9_000_000_000, 1_000) for n in names])
    stop = run_consumer()
    wait_until(lambda: store.live_generation() and all(store.get(n.lower(), 1) for n in names), 20, "50 users")
    stop.set()

    reader = Consumer(consumer_config(settings))
    partitions = [TopicPartition(settings.topic, p) for p in range(6)]

    def committed_total():
        committed = reader.committed(partitions, timeout=5)
        return sum(max(tp.offset, 0) for tp in committed) == 50

    wait_until(committed_total, 20, "50 committed offsets")
    reader.close()
