"""A partition's log that went back under the consumer (an unclean leader election): read again, and said.

Kafka refuses unclean leader elections by default, but a topic or broker may allow them
(`unclean.leader.election.enable`), and a broker restored from an older disk does the same: the
new leader's log ends before records the consumer already projected, and new events take their
offsets. A consumer resuming at its saved offset then skips every new event below it without a
word. Probed on the 3-broker rig (Kafka 4.1, a topic allowing unclean elections): 50 of 70 new
users were never projected, after a restart and while running alike (the group rebalanced).

So each saved position carries the leader epoch of the message before it (KIP-320), and the
consumer positions with it: librdkafka asks the leader where that epoch ended and, when that is
before the position, resumes there. It does the same by itself when the leader changes under a
running fetch, but checks its fetch position, which runs ahead of what the consumer has read:
the messages it had fetched are dropped, and if the log was cut after some of them, those come
no more. `Continuity` therefore compares each batch with where each partition was to go on:
- a batch starting below it: the log went back; said (an ERROR, a counter, an alert) and read on;
- one starting past it as a newer leader epoch begins: the batch is dropped and every partition
  resumes from the saved positions, whose epoch check then finds where the log now goes on.
Either is first checked against the topic id: a topic replaced meanwhile is consumer/lineage.py's
case. Events only the lost offsets held stay projected; the AddService saved their users in
MySQL before it published, and `ums-find reconcile` compares the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import Message

log = logging.getLogger(__name__)


@dataclass
class Span:
    """What one batch covered per partition, in the order its messages came."""

    first: dict[int, int] = field(default_factory=dict)  # the first message's offset
    first_epochs: dict[int, int] = field(default_factory=dict)  # its leader epoch (-1: unknown)
    next: dict[int, int] = field(default_factory=dict)  # the offset after the last message
    epochs: dict[int, int] = field(default_factory=dict)  # the last message's leader epoch (-1: unknown)
    back: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, expected, offset) inside it
    skips: list[tuple[int, int, int]] = field(default_factory=list)  # the same, forward into a newer epoch


def _epoch(msg: Message) -> int:
    epoch = msg.leader_epoch()
    return -1 if epoch is None else epoch


def span(messages: Iterable[Message]) -> Span:
    """Per partition: where the batch starts and where it leaves off (offset and leader epoch)."""
    covered = Span()
    last: dict[int, Message] = {}
    for msg in messages:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        expected = covered.next.get(partition)
        if expected is None:
            covered.first[partition] = offset
            covered.first_epochs[partition] = _epoch(msg)
        elif offset < expected:
            covered.back.append((partition, expected, offset))
        elif offset > expected and _epoch(msg) > _epoch(last[partition]):  # epochs read at gaps only
            covered.skips.append((partition, expected, offset))
        covered.next[partition] = offset + 1
        last[partition] = msg
    for partition, msg in last.items():
        covered.epochs[partition] = _epoch(msg)
    return covered


class Continuity:
    """Where each partition goes on; a batch starting below it means the log went back."""

    def __init__(
        self,
        topic: str,
        on_truncated: Callable[[int], None] = lambda n: None,
        replaced: Callable[[], bool] = lambda: False,
    ) -> None:
        """`on_truncated`: how many offsets the log went back by; `replaced`: whether the topic was
        replaced (asked only when a partition jumped)."""
        self.topic = topic
        self.on_truncated = on_truncated
        self.replaced = replaced
        self.expected: dict[int, int] = {}  # partition -> the offset its next message should have
        self.epochs: dict[int, int] = {}  # partition -> the leader epoch of the last message read
        self.said: set[tuple[int, int]] = set()  # (partition, expected) already counted by this process
        self.resumed: set[tuple[int, int]] = set()  # (partition, expected) repositioned for a skip once

    def expect(self, partition: int, offset: int, epoch: int = -1) -> None:
        """`partition` was positioned at `offset` (a logical one, below 0: not known until it reads),
        the message before it of leader epoch `epoch` (-1: unknown)."""
        if offset >= 0 and epoch >= 0:
            self.expected[partition], self.epochs[partition] = offset, epoch
            return
        self.epochs.pop(partition, None)
        if offset >= 0:
            self.expected[partition] = offset
        else:
            self.expected.pop(partition, None)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.expected.pop(partition, None)
            self.epochs.pop(partition, None)

    def check(self, covered: Span) -> bool:
        """Whether the batch goes on from where each partition was; False: drop it and reposition
        every partition from the saved positions (a newer leader epoch skipped offsets, or the
        topic was replaced). Offsets gone back are said, then the batch is read."""
        back, skipped = list(covered.back), list(covered.skips)
        for partition, first in covered.first.items():
            expected = self.expected.get(partition, -1)
            if 0 <= first < expected:
                back.append((partition, expected, first))
            elif first > expected >= 0 and covered.first_epochs[partition] > self.epochs.get(partition, 1 << 31):
                skipped.append((partition, expected, first))
        # Once per offset: read again from the saved positions, a skip that comes back is a real gap
        # (a transaction marker or compaction at a leader change), not fetched messages dropped.
        skipped = [s for s in skipped if s[:2] not in self.resumed]
        if (back or skipped) and self.replaced():
            return False
        if skipped:
            self._skipped(skipped)
            return False
        for partition, expected, first in back:
            self._report(partition, expected, first)
        self.expected.update(covered.next)
        self.epochs.update(covered.epochs)
        return True

    def _skipped(self, skipped: list[tuple[int, int, int]]) -> None:
        for partition, expected, first in skipped:
            self.resumed.add((partition, expected))
            log.warning(
                "partition %s of %s jumped from offset %s to %s as a newer leader epoch began: librdkafka"
                " may have dropped messages it had fetched (it does when it finds the new leader's log cut"
                " short), so every partition is read again from the saved positions",
                partition,
                self.topic,
                expected,
                first,
                extra={"partition": partition, "expected": expected, "first": first},
            )

    def _report(self, partition: int, expected: int, first: int) -> None:
        again = (partition, expected) in self.said
        if not again:
            self.said.add((partition, expected))
            self.on_truncated(expected - first)
        log.log(
            logging.WARNING if again else logging.ERROR,
            "partition %s of %s went back from offset %s to %s%s: its leader's log no longer holds offsets"
            " %s..%s as they were read (an unclean leader election, a broker restored from an older disk;"
            " for a position saved without a leader epoch, also a log shorter than it) and new events take"
            " them. Reading on from %s, so none of the new ones is skipped; what only the lost offsets held"
            " stays projected: run `ums-find reconcile` to compare with MySQL",
            partition,
            self.topic,
            expected,
            first,
            " again (said before)" if again else "",
            first,
            expected - 1,
            first,
            extra={"partition": partition, "expected": expected, "resumed": first, "truncated": expected - first},
        )
