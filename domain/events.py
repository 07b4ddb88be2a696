"""Events the projection understands, and the version that orders them.

Version rule (docs/decisions.md): the AddService publishes with a null key, so
one user's events can sit on several partitions and a Kafka offset is not a
per-user order. An event's version is the tuple

    (event time in epoch milliseconds, partition, offset)

compared lexicographically, where the event time is the message's Kafka timestamp
(when the AddService sent it) for puts and tombstones alike: one clock, one rule.
A put's `since` is data; it may not lie further in the future than a configured
skew from that timestamp (the event is dead-lettered otherwise), and the broker
refuses a timestamp that far ahead of its own clock, so no producer clock can pin a
user. Equal times are broken by partition, then offset. A row read
from MySQL (backfill, read-repair) has no send time: its time is `since` and its
partition -1, so the event that published the same save (sent just after it) wins.
Equal versions are the same event delivered twice, which changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from domain.model import User, canonical_name

MYSQL_PARTITION = -1
# `reconcile --repair` writes MySQL's row so that it beats any event of the same time
# (the projection drifted), while an event with a later `since` still wins.
REPAIR_PARTITION = 2**31 - 1


class Version(NamedTuple):
    """Compared as a tuple; a NamedTuple so that comparing and building one stay in C."""

    time_ms: int
    partition: int
    offset: int

    @classmethod
    def from_mysql(cls, since_ms: int) -> Version:
        return cls(since_ms, MYSQL_PARTITION, 0)

    @classmethod
    def repair(cls, since_ms: int) -> Version:
        return cls(since_ms, REPAIR_PARTITION, 0)


@dataclass(frozen=True)
class UserAdded:
    """The AddService saved a user (or saved a user again with new data)."""

    user: User
    version: Version

    @property
    def key(self) -> str:
        return self.user.name.canonical


@dataclass(frozen=True)
class UserRemoved:
    """A tombstone: a null value with the user's name as key."""

    name: str
    version: Version

    @property
    def key(self) -> str:
        return canonical_name(self.name)
