"""DeadLetters with a hand-written fake producer: once per message, again only if reported failed."""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.decode import PoisonEvent
from consumer.dlq import MAX_DEAD_VALUE, DeadLetters
from consumer.retry import Stopping


class FakeMessage:
    def __init__(self, offset: int, value: bytes = b"{not json") -> None:
        self._offset, self._value = offset, value

    def topic(self) -> str:
        return "users"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class FakeProducer:
    """Queues delivery reports and hands them out on poll(); scripted failures and a bounded queue."""

    def __init__(self, fail: set[int] | None = None, queue_limit: int = 1000, reports_per_poll: int = 1000) -> None:
        self.fail = fail or set()  # offsets whose *first* delivery is reported failed
        self.queue_limit = queue_limit
        self.reports_per_poll = reports_per_poll
        self.produced: list[tuple[int, list]] = []
        self._reports: deque = deque()
        self.buffer_errors = 0

    def produce(self, topic, key, value, headers, on_delivery) -> None:
        if len(self._reports) >= self.queue_limit:
            self.buffer_errors += 1
            raise BufferError("Local: Queue full")
        offset = int(dict(headers)["ums.original.offset"])
        first = all(o != offset for o, _ in self.produced)
        self.produced.append((offset, headers))
        error = "broker down" if first and offset in self.fail else None
        self._reports.append((on_delivery, error, value))

    def poll(self, timeout: float) -> int:
        served = 0
        while self._reports and served < self.reports_per_poll:
            callback, error, value = self._reports.popleft()
            callback(error, value)
            served += 1
        return served


def poison(n: int) -> PoisonEvent:
    return PoisonEvent("invalid-json", f"bad {n}")


def test_each_dead_letter_is_produced_once_with_its_reason():
    producer = FakeProducer()
    DeadLetters(producer, "users.dlq", threading.Event()).send([(FakeMessage(n), poison(n)) for n in range(50)])
    assert [o for o, _ in producer.produced] == list(range(50))
    headers = dict(producer.produced[7][1])
    assert headers["ums.error.class"] == b"invalid-json"
    assert headers["ums.original.partition"] == b"2" and headers["ums.original.offset"] == b"7"


def test_only_the_failed_ones_are_produced_again():
    producer = FakeProducer(fail={3, 8})
    DeadLetters(producer, "users.dlq", threading.Event()).send([(FakeMessage(n), poison(n)) for n in range(10)])
    offsets = [o for o, _ in producer.produced]
    assert sorted(offsets) == sorted([*range(10), 3, 8])


def test_a_full_local_queue_is_waited_out_not_a_crash():
    producer = FakeProducer(queue_limit=5, reports_per_poll=2)
    beats = []
    DeadLetters(producer, "users.dlq", threading.Event()).send(
        [(FakeMessage(n), poison(n)) for n in range(40)], on_wait=lambda: beats.append(1)
    )
    assert producer.buffer_errors > 0
    assert sorted(o for o, _ in producer.produced) == list(range(40))
    assert beats, "the heartbeat was not advanced while waiting"


def test_a_huge_value_is_truncated_and_says_so():
    producer = FakeProducer()
    big = FakeMessage(1, b"x" * (MAX_DEAD_VALUE + 10))
    DeadLetters(producer, "users.dlq", threading.Event()).send([(big, poison(1))])
    assert dict(producer.produced[0][1])["ums.value.truncated"] == b"true"


def test_stopping_while_reports_are_missing_raises_stopping():
    class Silent(FakeProducer):
        def poll(self, timeout: float) -> int:
            stop.set()  # shutdown arrives while the broker has not answered
            return 0

    stop = threading.Event()
    with pytest.raises(Stopping):
        DeadLetters(Silent(), "users.dlq", stop).send([(FakeMessage(1), poison(1))])


class NoTopicYet(FakeProducer):
    """A broker without the dead-letter topic (auto-create off) until `appears` refused produces."""

    def __init__(self, appears: int) -> None:
        super().__init__()
        self.appears = appears

    def produce(self, topic, key, value, headers, on_delivery) -> None:
        if self.appears:
            self.appears -= 1
            raise KafkaException(
                KafkaError(KafkaError._UNKNOWN_TOPIC, "Unable to produce message: Local: Unknown topic")
            )
        super().produce(topic, key, value, headers, on_delivery)


class Admin:
    """describe_topics as the broker answers it: the topic's description, or the error it raises."""

    def __init__(self, error: int | None) -> None:
        self.error = error

    def describe_topics(self, topics, request_timeout):
        (name,) = topics.topic_names
        future: Future = Future()
        if self.error is None:
            future.set_result(SimpleNamespace(name=name))
        else:
            future.set_exception(KafkaException(KafkaError(self.error)))
        return {name: future}


def test_a_missing_dead_letter_topic_is_waited_for_and_said_once(monkeypatch, caplog):
    monkeypatch.setattr("consumer.retry.random.uniform", lambda a, b: 0.0)  # no backoff sleeps
    producer = NoTopicYet(appears=3)
    letters = DeadLetters(producer, "users.dlq", threading.Event())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="consumer.dlq"):
        assert letters.check_topic(Admin(KafkaError.UNKNOWN_TOPIC_OR_PART), tries=1) is False  # type: ignore[arg-type]
        letters.send([(FakeMessage(7), poison(7))])  # refused three times, then the topic exists
    assert [o for o, _ in producer.produced] == [7]
    assert letters.check_topic(Admin(None)) is True  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 1 and "users.dlq does not exist" in lines[0] and "ums-find topics" in lines[0]


class Silent(Admin):
    """A broker that never answers (down, or refusing the credentials): the future never completes."""

    def describe_topics(self, topics, request_timeout):
        (name,) = topics.topic_names
        return {name: Future()}


def test_an_unanswered_topic_check_says_nothing(caplog):
    letters = DeadLetters(FakeProducer(), "users.dlq", threading.Event())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="consumer.dlq"):
        assert letters.check_topic(Admin(KafkaError._TIMED_OUT)) is True  # type: ignore[arg-type]
        assert letters.check_topic(Silent(None), timeout=0.01) is True  # type: ignore[arg-type]
    assert caplog.records == []


def test_a_topic_unknown_for_a_moment_is_not_called_missing(monkeypatch):
    letters = DeadLetters(FakeProducer(), "users.dlq", threading.Event())  # type: ignore[arg-type]
    monkeypatch.setattr(letters.stop, "wait", lambda s: False)  # no pause between the tries
    answers = iter([Admin(KafkaError.UNKNOWN_TOPIC_OR_PART), Admin(None)])

    class Flaky(Admin):
        def describe_topics(self, topics, request_timeout):
            return next(answers).describe_topics(topics, request_timeout)

    assert letters.check_topic(Flaky(None)) is True  # type: ignore[arg-type]


def test_a_long_wait_names_each_dead_letter_once(monkeypatch, caplog):
    monkeypatch.setattr("consumer.retry.random.uniform", lambda a, b: 0.0)
    letters = DeadLetters(NoTopicYet(appears=5), "users.dlq", threading.Event())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="consumer.dlq"):
        letters.send([(FakeMessage(7), poison(7))])
    assert sum("dead-lettering message" in r.getMessage() for r in caplog.records) == 1
