"""A stand-in for the Java AddService: save users in MySQL, then publish the event as it does."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from adapters.mysql import MySQLUsers
from domain import Name, PhoneNumber, User

log = logging.getLogger(__name__)

DEMO_USERS = [("KrishnaMohan", 9731423166), ("Ada Lovelace", 9800000001), ("Alan Turing", 9800000002)]


def event_value(user: User) -> bytes:
    """The AddService's event body: Jackson JSON of its UserRecord, `since` as epoch ms."""
    return json.dumps({"name": user.name.value, "phone": user.phone.value, "since": user.since_ms}).encode()


class AddService:
    """Saves to MySQL first, then publishes with a null key, like the real AddService (no outbox)."""

    def __init__(self, users: MySQLUsers, producer: Producer, topic: str) -> None:
        self.users = users
        self.producer = producer
        self.topic = topic

    def add_many(self, users: Iterable[User], batch: int = 5000) -> int:
        count = 0
        chunk: list[User] = []
        for user in users:
            chunk.append(user)
            if len(chunk) >= batch:
                count += self._save_and_publish(chunk)
                chunk = []
        count += self._save_and_publish(chunk)
        return count

    def add(self, user: User) -> None:
        """Save one user, then publish its event without waiting for the broker (as a Java
        producer's send() does); `flush` waits for every event sent so far."""
        self.users.upsert_many([user])
        self._produce(user)
        self.producer.poll(0)  # delivery reports of earlier events

    def flush(self) -> None:
        if self.producer.flush(30):
            raise RuntimeError("the broker did not acknowledge every event within 30 s")

    def _save_and_publish(self, users: list[User]) -> int:
        if not users:
            return 0
        self.users.upsert_many(users)
        for user in users:
            self._produce(user)
        self.flush()
        return len(users)

    def _produce(self, user: User) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value=event_value(user), key=None)
                return
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain


def generated_users(count: int, start: int = 0, now: datetime | None = None) -> Iterator[User]:
    """`count` distinct, valid users with deterministic names and phones."""
    base = now or datetime.now(UTC)
    for i in range(start, start + count):
        yield User(
            Name(f"Seed User {i:08d}"),
            PhoneNumber(9_000_000_000 + i),
            base - timedelta(milliseconds=start + count - i),
        )


def demo_users(now: datetime | None = None) -> list[User]:
    moment = now or datetime.now(UTC)
    return [User(Name(n), PhoneNumber(p), moment) for n, p in DEMO_USERS]
