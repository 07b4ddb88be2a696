"""The replay's pass over Kafka in one process: its loop over some partitions into the generation being built.

consumer/replay_workers.py runs one of these per worker process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from adapters.generations import ClaimLost, Generations
from adapters.kafka import consumer_config
from adapters.marks import Mark, WritesLost
from adapters.pipelined import PipelinedWrite
from adapters.settings import Settings
from adapters.store import ProjectionStore
from consumer.decode import Envelope, PoisonEvent, decode
from consumer.loop import CHUNK, envelope
from consumer.pace import Pace
from domain import newest_per_user
from domain.projection import Event

log = logging.getLogger(__name__)
# Bigger than a live batch: a replay is all backlog, and fewer, larger pipelines go faster.
REPLAY_BATCH = 10_000
# Users per fenced-script call while rebuilding: a replay's pipeline keeps Redis busy for
# seconds, so its calls are a quarter of the consumer's (~0.3 ms each instead of ~1.1 ms) and a
# reader's GET waits behind less. Measured (bench/readers_first.py, 1M events, 500 req/s reads,
# docs/decisions.md "Readers first"), both niced: readers' p99 10.7-15.5 ms at 50 against 18-25 ms
# at 200 (1M events); 18.9-26.6 against 21.7-26.6 ms and 40 shed reads against 267 (2.5M).
REPLAY_KEYS_PER_CALL = 50

Partitions = dict[int, tuple[int, int]]  # partition -> (first offset, end offset)
OnPoison = Callable[[Envelope, PoisonEvent], None]


class Interrupted(Exception):
    """SIGTERM or SIGINT during a rebuild: its claim is given up and its generation deleted."""


class EventsDeleted(ClaimLost):
    """Retention (or DeleteRecords) took events a Kafka-only rebuild had still to read: it cannot be whole."""


def apply_newest(store: ProjectionStore, events: Iterable[Event], target: int, mark: Mark | None = None) -> None:
    """The newest event per user of a rebuild's batch into generation `target`, REPLAY_KEYS_PER_CALL users
    a call; `mark` after them in the same pipeline (adapters/marks.py). Raises WritesLost."""
    store.apply(list(newest_per_user(events).values()), target, REPLAY_KEYS_PER_CALL, mark)


def apply_marked(
    store: ProjectionStore,
    generations: Generations,
    events: Iterable[Event],
    target: int,
    marks: dict[str, int],
    floors: dict[str, int],
) -> None:
    """`apply_newest` with the batch's fill marks after it; Redis gone back raises FillLost or ClaimLost."""
    try:
        apply_newest(store, events, target, generations.mark(target, marks, floors))
    except WritesLost as lost:
        raise generations.lost_rebuild(target, lost) from None


def replay_consumer(settings: Settings, kafka_only: bool = True) -> Consumer:
    """`kafka_only`: an offset deleted before it was read is an error (EventsDeleted), not skipped.
    With MySQL under it a rebuild may skip it: anything retention deletes is older than the snapshot."""
    config = consumer_config(
        settings,
        **{
            "group.id": f"{settings.group_id}-replay",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "error" if kafka_only else "earliest",
        },
    )
    return Consumer(config)


class PartitionReplay:
    """One process's replay of some partitions into generation `target`; clients are passed in."""

    def __init__(
        self,
        settings: Settings,
        store: ProjectionStore,
        target: int,
        partitions: Partitions,
        check: Callable[[], None],
        progress: Callable[[int], None],
        on_poison: OnPoison | None = None,
        pace: Pace | None = None,
        kafka_only: bool = True,
    ) -> None:
        """`check` raises to stop between batches; `progress` is told how many messages each batch read;
        `pace` (default: none) may hold each chunk's write back; `kafka_only`: see replay_consumer."""
        self.kafka_only = kafka_only
        self.settings, self.store, self.target = settings, store, target
        self.partitions, self.check, self.progress, self.on_poison = partitions, check, progress, on_poison
        self.pace = pace or Pace(0)
        self.poison = 0
        self.generations = Generations(store)
        self.marked: dict[str, int] = {}  # this replay's last marks (MARK_FILLED), per partition

    def run(self) -> int:
        """Replay every partition up to its end offset; how many messages were poison."""
        todo = {p: end for p, (low, end) in self.partitions.items() if end > low}
        if not todo:
            return 0
        consumer = replay_consumer(self.settings, self.kafka_only)
        consumer.assign([TopicPartition(self.settings.topic, p, self.partitions[p][0]) for p in todo])
        try:
            while todo:
                self.check()
                seen, positions = self._replay_batch(consumer, todo)
                self.progress(seen)
                # Done by position, not by last offset seen: compaction leaves gaps.
                for tp in positions:
                    if tp.offset >= todo[tp.partition]:
                        del todo[tp.partition]
                    elif not seen and self._all_deleted(consumer, tp, todo):
                        self._mark_done(tp.partition, todo.pop(tp.partition))
        finally:
            consumer.close()
        return self.poison

    def _all_deleted(self, consumer: Consumer, tp: TopicPartition, todo: dict[int, int]) -> bool:
        """Whether retention deleted everything this replay had left to read of `tp`'s partition.

        Over MySQL an offset deleted before it was read is skipped (auto.offset.reset): librdkafka
        resets to the log's start, and where that is past the end offset and no new event follows,
        it never reports a position (probed: -1001 for as long as one waits), so the rebuild waited.
        Asked only of a partition without a position after an empty batch.
        """
        if tp.offset >= 0 or self.kafka_only:
            return False
        try:
            low, _ = consumer.get_watermark_offsets(TopicPartition(self.settings.topic, tp.partition), timeout=10)
        except KafkaException as exc:  # asked again after the next empty batch
            log.warning("partition %d: its log start could not be asked: %s", tp.partition, exc)
            return False
        if low < todo[tp.partition]:
            return False
        log.info("partition %d: every offset left to replay was deleted before it was read", tp.partition)
        return True

    def _mark_done(self, partition: int, end: int) -> None:
        """The fill mark a partition's last batch would have left: nothing more of it is to be read."""
        marks = {str(partition): end}
        apply_marked(self.store, self.generations, [], self.target, marks, self.marked)
        self.marked.update(marks)

    def _replay_batch(self, consumer: Consumer, todo: dict[int, int]) -> tuple[int, list[TopicPartition]]:
        """One batch into the target: how many messages it read, and the positions after it.

        Decoded CHUNK messages at a time, each chunk's script calls sent before the next is
        decoded: Redis runs them while this thread decodes (adapters/pipelined.py). The replies,
        then the batch's marks, are read at the end; nothing flips before the last batch's were.
        A failed send or read writes the whole batch again the ordinary way, which raises if
        Redis still fails (and so fails the rebuild); the fence makes the second write harmless.
        """
        write = PipelinedWrite(self.store, (self.target,), REPLAY_KEYS_PER_CALL)
        events: list[Event] = []
        seen = 0
        messages = consumer.consume(REPLAY_BATCH, 0.5)
        for start in range(0, len(messages), CHUNK):
            try:
                chunk, read = self._decode(messages[start : start + CHUNK], todo)
            except EventsDeleted:
                write.abandon()  # replies unread: the pool must never hand this connection out again
                raise
            events += chunk
            seen += read
            if write.open:
                try:
                    write.send(newest_per_user(chunk))
                except redis.RedisError as error:
                    write.failed(error)  # written again below
            # Paced per chunk, not per batch: a batch's 10,000 events at full speed are a burst
            # the readers meet; a chunk's write runs in Redis while this process sleeps.
            self.pace.after(read)
        positions = consumer.position([TopicPartition(self.settings.topic, p) for p in todo])
        marks = {str(tp.partition): tp.offset for tp in positions if tp.offset >= 0}
        if not self._finish(write, marks):
            apply_marked(self.store, self.generations, events, self.target, marks, self.marked)
        self.marked.update(marks)
        return seen, positions

    def _finish(self, write: PipelinedWrite, marks: dict[str, int]) -> bool:
        """Send the marks after the data and read every reply; False if the write was abandoned.
        The marks are checked against this replay's last ones (the flip checks them too)."""
        if not write.open:
            return False
        try:
            write.wait(self.generations.mark(self.target, marks, self.marked))
        except WritesLost as lost:
            raise self.generations.lost_rebuild(self.target, lost) from None
        except redis.RedisError as error:
            write.failed(error)
            return False
        return True

    def _decode(self, messages: list[Message], todo: dict[int, int]) -> tuple[list[Event], int]:
        """These messages' events below each partition's end offset, and how many messages that was."""
        events: list[Event] = []
        seen = 0
        max_bytes, max_skew_ms = self.settings.max_event_bytes, self.settings.max_skew_ms  # a property: once
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._AUTO_OFFSET_RESET:
                    raise EventsDeleted(
                        f"partition {msg.partition()}: offset {msg.offset()} is no longer in the topic (retention,"
                        f" DeleteRecords, or a log truncated: {err.str()}) and this rebuild had still to read it:"
                        " no flip; rebuild with --source both"
                    )
                continue
            message = envelope(msg)
            if message.partition not in todo or message.offset >= todo[message.partition]:
                continue
            seen += 1
            try:
                events.append(decode(message, max_bytes, max_skew_ms))
            except PoisonEvent as bad:
                self.poison += 1  # live consumers dead-lettered it already (decoding is the same)
                if self.on_poison is not None:
                    self.on_poison(message, bad)
        return events, seen
