"""Events the broker deleted before this consumer read them (retention, DeleteRecords): found and named.

A partition resumes at its saved position, or at its beginning when it has none. When the log
no longer reaches back that far, librdkafka resumes at the log's start (auto.offset.reset) with
one warning, and the span between is never projected: the users it added are missing (the API
finds them in MySQL), the users it changed are stale and the users it removed stay. Checked once
per positioning, at the partition's first message: a first message past the expected offset
(compaction and transaction markers leave gaps too) is compared with the log start that the
latest fetch reported, so the check costs no round trip. With a transactional producer the
deleted span may hold only a commit marker or aborted records, which is no loss: the line says
so, and `ums-find reconcile` tells which it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)
# Only when the fetch has not reported the log start (it always has once a message arrived).
QUERY_TIMEOUT_S = 5.0


class DeletedUnread:
    """Partitions just positioned, each checked at its first message against the log's start."""

    def __init__(self, consumer: Consumer, topic: str, on_deleted: Callable[[int], None] = lambda n: None) -> None:
        self.consumer = consumer
        self.topic = topic
        self.on_deleted = on_deleted
        self.expected: dict[int, int] = {}  # partition -> the offset it was positioned at
        self.saved: dict[int, bool] = {}  # partition -> positioned at a saved position (not its beginning)

    def expect(self, partition: int, offset: int) -> None:
        """`partition` was positioned at `offset` (a logical one, OFFSET_BEGINNING: offset 0)."""
        self.expected[partition] = max(offset, 0)
        self.saved[partition] = offset >= 0

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.expected.pop(partition, None)
            self.saved.pop(partition, None)

    def check(self, messages: Sequence[Message]) -> None:
        """Compare each positioned partition's first message with where it was expected."""
        if not self.expected:
            return
        for msg in messages:
            partition = msg.partition()
            if partition is None or partition not in self.expected or msg.error() is not None:
                continue
            expected, saved = self.expected.pop(partition), self.saved.pop(partition, False)
            first = msg.offset() or 0
            if first > expected:
                self._compare(partition, expected, first, saved)
            if not self.expected:
                return

    def _compare(self, partition: int, expected: int, first: int, saved: bool) -> None:
        start = min(self._log_start(partition), first)
        deleted = start - expected
        if deleted <= 0:
            return  # compaction or transaction markers: nothing was deleted before it was read
        self.on_deleted(deleted)
        where = "its saved position" if saved else "the beginning (no saved position: a new or wiped projection)"
        log.error(
            "partition %s: offsets %s..%s were deleted from the topic (retention or DeleteRecords) before this"
            " consumer read them; it resumed at %s instead of %s. Users those events added are missing,"
            " changed ones stale, removed ones still present (unless the offsets held only a transactional"
            " producer's markers or aborted records): run `ums-find reconcile`, and `--repair` on drift",
            partition,
            expected,
            start - 1,
            start,
            where,
            extra={"partition": partition, "expected": expected, "log_start": start, "deleted": deleted},
        )

    def _log_start(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        low, _ = self.consumer.get_watermark_offsets(tp, cached=True)
        if low >= 0:
            return int(low)
        try:
            low, _ = self.consumer.get_watermark_offsets(tp, timeout=QUERY_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("partition %s: log start unknown (%s); a deletion before it cannot be checked", partition, exc)
            return -1
        return int(low)
