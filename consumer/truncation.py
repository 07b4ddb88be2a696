"""A partition's log that went back under the consumer (an unclean leader election): read again, and said.

Kafka refuses unclean leader elections by default, but a topic or broker may allow them
(`unclean.leader.election.enable`), and a broker restored from an older disk does the same: the
new leader's log ends before records the consumer already projected, and new events take their
offsets. A consumer resuming at its saved offset then skips every new event below it without a
word. Probed on the 3-broker rig (Kafka 4.1, a topic allowing unclean elections): 50 of 70 new
users were never projected, after a restart and while running alike (the group rebalanced).

So each saved position carries the leader epoch of the message before it (KIP-320), and the
consumer positions with it: librdkafka asks the leader where that epoch ended and, when that is
before the position, resumes there (it does the same by itself when the leader changes under a
running fetch). The consumer then sees a partition start again below where it was: `Continuity`
compares each batch's first offset per partition with where the partition was to go on, and
says so once per jump (an ERROR, a counter, an alert). Events only the lost offsets held stay
projected; the AddService saved their users in MySQL before it published, and `ums-find
reconcile` compares the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import Message

log = logging.getLogger(__name__)


@dataclass
class Span:
    """What one batch covered per partition."""

    first: dict[int, int] = field(default_factory=dict)  # its first offset
    next: dict[int, int] = field(default_factory=dict)  # the offset after its last message
    epochs: dict[int, int] = field(default_factory=dict)  # that message's leader epoch (-1: unknown)


def span(messages: Iterable[Message]) -> Span:
    """Per partition: the first offset, the next offset to read, and the leader epoch before it."""
    covered = Span()
    last: dict[int, Message] = {}
    for msg in messages:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if offset + 1 > covered.next.get(partition, -1):
            covered.next[partition] = offset + 1
            last[partition] = msg
        if offset < covered.first.get(partition, offset + 1):
            covered.first[partition] = offset
    for partition, msg in last.items():
        epoch = msg.leader_epoch()
        covered.epochs[partition] = -1 if epoch is None else epoch
    return covered


class Continuity:
    """Where each partition goes on; a batch starting below it means the log went back."""

    def __init__(self, topic: str, on_truncated: Callable[[int], None] = lambda n: None) -> None:
        """`on_truncated`: how many offsets the log went back by."""
        self.topic = topic
        self.on_truncated = on_truncated
        self.expected: dict[int, int] = {}  # partition -> the offset its next message should have

    def expect(self, partition: int, offset: int) -> None:
        """`partition` was positioned at `offset` (a logical one, below 0: not known until it reads)."""
        if offset >= 0:
            self.expected[partition] = offset
        else:
            self.expected.pop(partition, None)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.expected.pop(partition, None)

    def check(self, covered: Span) -> None:
        """Compare the batch's first offsets with the expected ones, then expect what follows it."""
        for partition, first in covered.first.items():
            expected = self.expected.get(partition, -1)
            if first < expected:
                self._report(partition, expected, first)
        self.expected.update(covered.next)

    def _report(self, partition: int, expected: int, first: int) -> None:
        self.on_truncated(expected - first)
        log.error(
            "partition %s of %s went back from offset %s to %s: its leader's log lost offsets %s..%s"
            " (an unclean leader election, or a broker restored from an older disk) and new events take"
            " them. Reading on from %s, so none of the new ones is skipped; what only the lost offsets"
            " held stays projected: run `ums-find reconcile` to compare with MySQL",
            partition,
            self.topic,
            expected,
            first,
            first,
            expected - 1,
            first,
            extra={"partition": partition, "expected": expected, "resumed": first, "truncated": expected - first},
        )
