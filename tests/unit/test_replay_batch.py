"""A replay's batch on fakeredis: sent pipelined with its fill marks after it, and written the ordinary
way when the pipelined send fails (e.g. Redis restarted and lost its scripts)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from confluent_kafka import TopicPartition

import consumer.replay_kafka as replay_kafka
from adapters.generations import Generations
from consumer.replay_kafka import PartitionReplay

SINCE_MS = 1_700_000_000_000


class FakeMessage:
    """What `consumer.loop.envelope` reads of a Kafka message."""

    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, SINCE_MS  # TIMESTAMP_CREATE_TIME


class FakeConsumer:
    """One batch of `count` users on partition 0, then the position after it."""

    def __init__(self, count: int) -> None:
        self.messages = [
            FakeMessage(0, i, json.dumps({"name": f"Replay User {i:04d}", "phone": 9_100_000_000 + i}).encode())
            for i in range(count)
        ]

    def consume(self, _n: int, _timeout: float) -> list[Any]:
        batch, self.messages = self.messages, []
        return batch

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 1_000) for tp in tps]


def batch_of(settings, store, count: int) -> tuple[PartitionReplay, Generations, int]:
    generations = Generations(store)
    generations.ensure()
    target, _claim = generations.start(lease_ms=60_000)
    replay = PartitionReplay(settings, store, target, {0: (0, count)}, check=lambda: None, progress=lambda n: None)
    seen, positions = replay._replay_batch(FakeConsumer(count), {0: count})
    assert seen == count and [tp.offset for tp in positions] == [1_000]
    return replay, generations, target


def written(store, target: int, count: int) -> int:
    return sum(store.get(f"replay user {i:04d}", target) is not None for i in range(count))


def test_a_batch_is_sent_pipelined_with_its_marks_after_it(settings, store, monkeypatch):
    store.client.script_load(store._fenced_set.script)  # as after a first ordinary write
    store.client.script_load(store._mark_filled.script)
    monkeypatch.setattr(replay_kafka, "apply_marked", lambda *a: pytest.fail("written the ordinary way"))
    replay, generations, target = batch_of(settings, store, 1_000)  # three chunks of up to 400
    assert written(store, target, 1_000) == 1_000
    assert store.client.hgetall(generations.fill_key(target)) == {b"0": b"1000"}
    assert replay.marked == {"0": 1_000}


def test_a_failed_pipelined_send_writes_the_batch_the_ordinary_way(settings, store, caplog):
    store.client.script_flush()  # Redis restarted: EVALSHA answers NOSCRIPT
    with caplog.at_level(logging.INFO, logger="adapters.pipelined"):
        replay, generations, target = batch_of(settings, store, 1_000)
    assert "pipelined write failed" in caplog.text  # the operator is told, as by the live consumer
    assert written(store, target, 1_000) == 1_000
    assert store.client.hgetall(generations.fill_key(target)) == {b"0": b"1000"}
    assert replay.marked == {"0": 1_000}
    assert not store.client.connection_pool._in_use_connections  # the abandoned connection went back
