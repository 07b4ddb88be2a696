"""Replay equivalence: a replay run later rebuilds exactly what the live consumer built (issue 26).

A generated history (puts, updates, tombstones, every kind of poison, CreateTimes behind
and ahead, null keys, six partitions) is consumed live by `ums-find consume`; then the
replay (consumer.replay.Rebuild, what `ums-find replay` runs) rebuilds it with the wall
clock a day later. The determinism rule (docs/decisions.md) says both are functions of
the log and the settings only: the new generation equals the live one key by key (value
and version), and the messages the replay skips as poison are exactly the dead letters
the live consumer wrote (same original partition, offset, reason, key and value).
Seeded: the seed is printed; REPLAY_TEST_SEED=<seed> repeats a history.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from adapters.clients import kafka_producer
from adapters.kafka import consumer_config
from adapters.settings import Settings
from consumer.decode import Envelope, PoisonEvent
from consumer.replay import Rebuild
from tests.conftest import CLUSTER_TOO
from tests.faults.rig import Model, compare, live_snapshot, snapshot, wait_converged
from tests.faults.test_poison import poison_mix
from tests.helpers import wait_until

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
PARTITIONS = 6


@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    far_ahead: bool  # further ahead of real time than UMS_MAX_CLOCK_SKEW_S (300 s)


class History:
    """Random AddService traffic and poison for a few users, with CreateTimes around `now_ms`."""

    def __init__(self, rng: random.Random, tag: str, now_ms: int) -> None:
        self.rng = rng
        self.now_ms = now_ms
        self.names = [f"{tag} user {i:02d}" for i in range(10)]
        self.poison = poison_mix(tag)
        self.records: list[Record] = []

    def spelling(self, name: str) -> str:
        """Another spelling of the same user (same canonical key)."""
        return self.rng.choice([name, name.upper(), name.lower(), name.title()])

    def timestamp(self, far: bool = False) -> int:
        if far:  # past the bound, inside Kafka 4's default hour (so an unbounded topic keeps it)
            return self.now_ms + self.rng.randrange(10 * MINUTE_MS, 50 * MINUTE_MS)
        kind = self.rng.random()
        near = [r.timestamp_ms for r in self.records[-50:] if not r.far_ahead]
        if kind < 0.15 and near:  # the same time as an earlier one: ties
            return self.rng.choice(near)
        if kind < 0.35:  # ahead, within the bound
            return self.now_ms + self.rng.randrange(0, 4 * MINUTE_MS)
        return self.now_ms - self.rng.randrange(0, 3 * DAY_MS)  # behind: late publications

    def since(self, ts: int) -> object:
        kind = self.rng.randrange(5)
        if kind == 0:
            return None  # absent: the message timestamp stands in
        moment = ts - self.rng.randrange(0, 10**9)
        if kind == 1:
            return datetime.fromtimestamp(moment / 1000, UTC).isoformat()
        if kind == 2:
            return datetime.fromtimestamp(moment // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if kind == 3:
            return ts + self.rng.randrange(0, 300_000)  # ahead of its timestamp, within the skew
        return moment

    def add(self, key: bytes | None, value: bytes | None, far: bool = False, ts: int | None = None) -> None:
        ts = self.timestamp(far) if ts is None else ts
        self.records.append(Record(self.rng.randrange(PARTITIONS), key, value, ts, far))

    def put(self, far: bool = False) -> None:
        name, ts = self.rng.choice(self.names), self.timestamp(far)
        body: dict[str, object] = {"name": self.spelling(name), "phone": 9_000_000_000 + self.rng.randrange(10**9)}
        since = self.since(ts)
        if since is not None:
            body["since"] = since
        key = self.spelling(name).encode() if self.rng.random() < 0.3 else None  # AddService: null keys
        self.add(key, json.dumps(body).encode(), far, ts)

    def tombstone(self, far: bool = False) -> None:
        self.add(self.spelling(self.rng.choice(self.names)).encode(), None, far)

    def bad(self) -> None:
        kind = self.rng.randrange(len(self.poison) + 4)
        name = self.rng.choice(self.names)
        if kind < len(self.poison):
            key, value, _ = self.poison[kind]
            self.add(key, value)
        elif kind == len(self.poison):  # since more than the skew after its own timestamp
            self.add(None, json.dumps({"name": name, "phone": 9731423166, "since": 2**42}).encode())
        elif kind == len(self.poison) + 1:
            self.add(b"short", None)  # a tombstone whose key is no valid name
        elif kind == len(self.poison) + 2:
            self.add(b"\xff\xfe" + name.encode(), None)  # ... or no UTF-8
        else:
            self.add(None, json.dumps({"name": name, "phone": 9731423166, "since": [2024, 13, 1, 0, 0]}).encode())

    def generate(self, size: int) -> list[Record]:
        for key, value, _ in self.poison:  # every kind of poison at least once
            self.add(key, value)
        # The case: a put stamped 10+ minutes ahead, then a tombstone of the same user.
        self.put(far=True)
        self.tombstone(far=True)
        while len(self.records) < size:
            roll = self.rng.random()
            self.put() if roll < 0.55 else self.tombstone() if roll < 0.75 else self.bad()
            if self.rng.random() < 0.03:
                self.put(far=True) if self.rng.random() < 0.7 else self.tombstone(far=True)
        self.rng.shuffle(self.records)
        return self.records


def produce(producer: Producer, topic: str, records: list[Record], model: Model) -> dict[int, str | None]:
    """Produce every record; return each one's delivery error by its index (None: in the log)."""
    reports: dict[int, str | None] = {}

    def report(n: int):  # type: ignore[no-untyped-def]
        def on_delivery(err, msg) -> None:  # type: ignore[no-untyped-def]
            reports[n] = err.name() if err else None
            model.on_delivery(err, msg)

        return on_delivery

    for n, record in enumerate(records):
        if record.far_ahead:
            producer.flush(30)  # alone in its batch: a refused batch refuses every message in it
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            partition=record.partition,
            timestamp=record.timestamp_ms,
            on_delivery=report(n),
        )
        if record.far_ahead:
            producer.flush(30)
    assert producer.flush(60) == 0 and len(reports) == len(records), "not every record was reported"
    return reports


Letter = tuple[str, bytes | None, bytes | None]  # reason, key, value


def dead_letters(settings: Settings) -> dict[tuple[int, int], Letter]:
    """The whole dead-letter topic, by original (partition, offset); redeliveries must agree."""
    reader = Consumer(
        consumer_config(settings, **{"group.id": settings.group_id + "-dlq", "enable.auto.commit": False})
    )
    tp = TopicPartition(settings.dead_letter_topic, 0, 0)
    _, high = reader.get_watermark_offsets(tp, timeout=10)
    reader.assign([tp])
    letters: dict[tuple[int, int], Letter] = {}
    read = [0]

    def more() -> bool:
        for msg in reader.consume(500, 0.2):
            if msg.error():
                continue
            read[0] = (msg.offset() or 0) + 1
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            assert headers["ums.original.topic"] == settings.topic
            where = int(headers["ums.original.partition"]), int(headers["ums.original.offset"])
            letter = (headers["ums.error.class"], msg.key(), msg.value())
            assert letters.setdefault(where, letter) == letter, f"two different dead letters for {where}"
        return read[0] >= high

    try:
        wait_until(more, 30, f"the {high} dead letters")
    finally:
        reader.close()
    return letters


def replay_a_day_later(settings: Settings, store, monkeypatch) -> tuple[int, dict[tuple[int, int], Letter]]:  # type: ignore[no-untyped-def]
    """Rebuild from Kafka as `ums-find replay` does, with the wall clock reading a day later.

    The clock is moved in this process: with more than one replay worker, the spawned workers
    read the real clock (they decode with the very code the one-worker case runs here).
    """
    skipped: dict[tuple[int, int], Letter] = {}

    def on_poison(msg: Envelope, bad: PoisonEvent) -> None:
        skipped[(msg.partition, msg.offset)] = (bad.code, msg.key, msg.value)

    real = time.time
    with monkeypatch.context() as later:
        later.setattr(time, "time", lambda: real() + DAY_MS / 1000)
        result = Rebuild(settings, store, None, from_kafka=True, stop=threading.Event(), on_poison=on_poison).run()
    return result.target, skipped


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_replay_a_day_later_rebuilds_what_the_live_consumer_built(
    settings, store, model, consumers, name_tag, monkeypatch, workers
):
    seed = int(os.environ.get("REPLAY_TEST_SEED", random.randrange(2**32)))
    print(f"replay equivalence seed: {seed}")
    records = History(random.Random(seed), name_tag, int(time.time() * 1000)).generate(size=240)

    live = consumers("live").start()
    live.wait_running()
    reports = produce(kafka_producer(settings), settings.topic, records, model)
    wait_converged(settings, timeout=60)

    # What reaches the log is what the broker accepts: only a timestamp past the bound is refused.
    refused = {records[n]: err for n, err in reports.items() if err is not None}
    assert all(r.far_ahead and err == "INVALID_TIMESTAMP" for r, err in refused.items()), refused
    built_live = live_snapshot(store)
    generation = store.live_generation()
    letters = dead_letters(settings)
    assert compare(model.view(), built_live).ok, "the live projection is not the fold of the log"
    assert len(letters) == model.poison

    # Two workers: each replays three of the six partitions in a process of its own, and the
    # poison they skip comes back to this process (a user's events may sit in several partitions).
    target, skipped = replay_a_day_later(replace(settings, replay_workers=workers), store, monkeypatch)
    assert store.live_generation() == target != generation
    rebuilt = snapshot(store, target)
    print(
        f"seed {seed}: {len(records)} records, {len(refused)} refused by the broker, {len(built_live)} users,"
        f" {len(letters)} dead letters, {len(skipped)} skipped by the replay"
    )
    differ = {k: (built_live.get(k), rebuilt.get(k)) for k in built_live.keys() | rebuilt.keys()}
    differ = {k: v for k, v in differ.items() if v[0] != v[1]}
    unmatched = {k: (letters.get(k), skipped.get(k)) for k in letters.keys() | skipped.keys()}
    unmatched = {k: v for k, v in unmatched.items() if v[0] != v[1]}
    print(f"seed {seed}: {len(differ)} users differ, {len(unmatched)} dead letters differ (live, replay)")
    assert differ == {}, "the replay built another projection"
    assert unmatched == {}, "the replay's poison is not the live consumer's dead letters"
    live.stop()
