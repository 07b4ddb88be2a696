"""The consume loop: consume, follow the pointer, write through the fence, dead-letter poison, save positions."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from adapters.generations import Generations, Pointer
from adapters.marks import Mark
from adapters.pipelined import PipelinedWrite
from adapters.settings import Settings
from adapters.store import ProjectionStore
from consumer.decode import Envelope, PoisonEvent, decode
from consumer.dlq import DeadLetters
from consumer.group import ConsumerFenced, fatal_hint, is_fatal, leave
from consumer.health import HealthFile
from consumer.lineage import Lineage, TopicWatch
from consumer.metrics import ConsumerMetrics
from consumer.positions import Positions
from consumer.projector import Projector
from consumer.retry import Stopping
from consumer.truncation import Span, span
from consumer.waiting import Waits
from domain import newest_per_user
from domain.projection import Event

log = logging.getLogger(__name__)
# Messages decoded per pipelined send: Redis applies one chunk while the next is decoded. Measured
# (bench/write_path.py ab, 300k events): chunks of 200, 1,000 and 2,000 (no overlap) ran at a median
# 0.93, 0.88 and 0.89 of 400's steady rate.
CHUNK = 400


def envelope(msg: Message) -> Envelope:
    kind, timestamp = msg.timestamp()
    # A consumed message always has a partition and an offset.
    return Envelope(msg.key(), msg.value(), msg.partition() or 0, msg.offset() or 0, timestamp if kind else None)


@dataclass
class Totals:
    """What this process did, logged when it stops (the fault tests read it)."""

    messages: int = 0
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    repositioned: int = 0


class ConsumeLoop:
    """Owns one Kafka consumer and projects its messages into Redis."""

    def __init__(
        self,
        consumer: Consumer,
        store: ProjectionStore,
        dead_letters: DeadLetters,
        settings: Settings,
        metrics: ConsumerMetrics,
        stop: threading.Event,
        topic_watch: TopicWatch | None = None,
    ) -> None:
        """`topic_watch`: the event topic's id (consumer/lineage.py); without it, positions are not checked."""
        self.consumer = consumer
        self.projector = Projector(store)
        generations = Generations(store)
        lineage = Lineage(topic_watch, generations, metrics.topic_replaced)
        self.positions = Positions(
            consumer,
            generations,
            settings.topic,
            metrics.redis_rewinds.inc,
            metrics.events_deleted,
            lineage,
            metrics.log_truncated,
        )
        self.dead_letters = dead_letters
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.health = HealthFile(settings.heartbeat_file)
        self.totals = Totals()
        self.waits = Waits(
            store.client, settings.redis_url, metrics, self.health, lambda: len(self.positions.assigned), stop
        )

    def run(self) -> None:
        """Consume until `stop` is set; then leave the group (a static member) and close."""
        self.consumer.subscribe(
            [self.settings.topic], on_assign=self.positions.on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            try:
                while not self.stop.is_set():
                    self.step()
            except Stopping:
                log.info("stopping with a batch unwritten; it will be consumed again")
            # Only a requested stop gets here. A fenced consumer has nothing to hand over, and a crash
            # keeps its membership: a container restarted in place under its id gets them back at once.
            if self.settings.group_instance_id:
                leave(self.consumer)
        finally:
            self.consumer.close()
            log.info("consumer closed", extra={"totals": asdict(self.totals)})

    def step(self) -> None:
        """One batch: consume, follow the pointer, write, dead-letter, save positions."""
        messages = self.fetch()
        if self.positions.topic_moved():
            self.positions.positioned = None  # the topic was replaced: its offsets start again
        # positioned is None: a save found the pointer moved or Redis gone back; reposition now.
        if messages or self.positions.positioned is None or self.health.due():
            pointer = self.waits.redis(self.positions.current, "pointer read")
            in_step = self.positions.in_step(pointer)
            covered = span(m for m in messages if m.error() is None) if messages and in_step else None
            if covered is not None and self.positions.continuity.check(covered):
                # Not on a batch about to be dropped: the reposition expects its partitions again.
                self.positions.deleted.check(messages)
                self.process(messages, pointer, covered)
            elif (
                covered is not None  # a partition jumped (consumer/truncation.py)
                or not in_step
                or self.waits.redis(lambda: self.positions.went_back(pointer), "positions check")
            ):
                self._raise_if_fatal(messages)  # skipped here, the batch would hide it
                # Wiped, new epoch, flipped, or Redis lost writes (found idle; a busy consumer's
                # save finds it): nothing of this batch is written; every partition resumes from
                # the pointer's positions instead.
                self.waits.redis(lambda: self.positions.reposition(pointer), "reposition", KafkaException)
                self.totals.repositioned += 1
        if self.health.due():
            self.health.write(len(self.positions.assigned), self._update_lag())

    def fetch(self) -> list[Message]:
        """The next batch: wait (up to the batch timeout) for the first message only, then take what
        the client has already fetched, up to a batch, without waiting.

        A lone event is written as soon as it arrives instead of after the timeout (freshness),
        and a backlog still comes in full batches (throughput). Measured in bench/freshness.py.
        """
        first = self.consumer.consume(1, self.settings.batch_timeout_s)
        if not first or self.settings.batch_size <= 1:
            return first
        return first + self.consumer.consume(self.settings.batch_size - 1, 0)

    def process(self, messages: Sequence[Message], pointer: Pointer, covered: Span) -> None:
        """Write the batch (`covered`: its span, consumer/truncation.py), dead-letter its poison, save positions."""
        events: list[Event] = []
        poison: list[tuple[Message, PoisonEvent]] = []
        done: list[Message] = []
        started = time.perf_counter()
        write = PipelinedWrite(self.projector.store, pointer.targets)
        decoded = 0
        try:
            # Redis runs a chunk's fenced script on its core while this one decodes the next.
            while decoded < len(messages):
                chunk = self._decode(messages[decoded : decoded + CHUNK], done, poison)
                decoded += CHUNK
                events += chunk
                write.send(newest_per_user(chunk))
        except redis.RedisError as failed:
            write.failed(failed)
        except ConsumerFenced:
            write.abandon()  # replies unread: the pool must never hand this connection out again
            raise
        # Every message is decoded, even past a failed send: none is saved past its write.
        events += self._decode(messages[decoded:], done, poison)
        offsets = covered.next
        # After the data, on its connection: the positions save checks it (adapters/marks.py).
        mark = self.positions.generations.mark(pointer.live, {str(p): o for p, o in offsets.items()})
        applied: int | None = None
        if write.open:
            try:
                applied = write.wait(mark if offsets else None)
            except redis.RedisError as failed:
                write.failed(failed)
        self.metrics.batch_size.observe(len(done))
        self.totals.messages += len(done)
        if events or (offsets and applied is None):
            self._write(events, pointer, applied, started, mark)
        if poison:
            waiting = self.waits.on_retry("dead-letter topic")
            self.dead_letters.send(poison, on_wait=lambda: waiting(TimeoutError()))
            for _, exc in poison:
                self.metrics.dead_lettered.labels(exc.code).inc()
            self.totals.dead_lettered += len(poison)
        if done:
            # After Redis and the DLQ acknowledged everything: at-least-once.
            self.waits.redis(lambda: self.positions.save(pointer, offsets, covered.epochs), "position save")

    def _decode(
        self, messages: Sequence[Message], done: list[Message], poison: list[tuple[Message, PoisonEvent]]
    ) -> list[Event]:
        events: list[Event] = []
        max_bytes, max_skew_ms = self.settings.max_event_bytes, self.settings.max_skew_ms  # a property: once
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(msg, err)
                continue
            done.append(msg)
            try:
                events.append(decode(envelope(msg), max_bytes, max_skew_ms))
            except PoisonEvent as bad:
                poison.append((msg, bad))
        return events

    def _write(self, events: list[Event], pointer: Pointer, applied: int | None, started: float, mark: Mark) -> None:
        """Count the write; `applied` None (the pipelined write failed): write the batch and its mark
        again until Redis answers."""
        if applied is None:
            applied = self.waits.redis(lambda: self.projector.apply(events, pointer.targets, mark), "redis write")
        self.metrics.apply_seconds.observe(time.perf_counter() - started)
        self.metrics.applied.inc(applied)
        self.metrics.stale.inc(len(events) - applied)
        self.totals.applied += applied
        self.totals.stale += len(events) - applied
        if applied:
            self.metrics.last_applied_ts.set_to_current_time()

    def _update_lag(self) -> int:
        """Per-partition lag from the last fetch's high watermark (no broker round trip)."""
        total = 0
        partitions = [TopicPartition(self.settings.topic, p) for p in self.positions.assigned]
        try:
            positions = self.consumer.position(partitions) if partitions else []
        except KafkaException:
            return total
        for tp in positions:
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            lag = max(high - tp.offset, 0) if high >= 0 and tp.offset >= 0 else 0
            self.metrics.lag.labels(str(tp.partition)).set(lag)
            total += lag
        return total

    def _raise_if_fatal(self, messages: Sequence[Message]) -> None:
        for msg in messages:
            err = msg.error()
            if err is not None and is_fatal(err):
                self._on_error(msg, err)

    def _on_error(self, msg: Message, err: KafkaError) -> None:
        """Log a message's error; a fatal one (the consumer is dead: it would idle, looking healthy) ends the loop."""
        if is_fatal(err):
            why = fatal_hint(err.str(), self.settings)
            log.error("kafka fatal error: %s; %s", err.str(), why)
            raise ConsumerFenced(why)
        log.warning(
            "kafka error: %s",
            err.str(),
            extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()},
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log.info("partitions revoked", extra={"partitions": sorted(p.partition for p in partitions)})
        try:
            # Monitoring only (lag): positions live in Redis, written after the data.
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit on revoke failed: %s", exc)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self.positions.forget(partitions)
        for p in partitions:
            with contextlib.suppress(KeyError):  # never measured yet
                self.metrics.lag.remove(str(p.partition))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log.warning("partitions lost", extra={"partitions": sorted(p.partition for p in partitions)})
