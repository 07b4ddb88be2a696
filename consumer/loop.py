"""The consume loop: batch, decode, write through the fence, dead-letter poison, then store offsets."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.decode import Envelope, PoisonEvent, decode
from consumer.dlq import DeadLetters
from consumer.health import HealthFile
from consumer.metrics import ConsumerMetrics
from consumer.retry import Stopping, retry_until_done
from domain import newest_per_user
from domain.projection import Event
from ums_find.generations import Generations, Pointer
from ums_find.settings import Settings
from ums_find.store import ProjectionStore

log = logging.getLogger(__name__)


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
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.dead_letters = dead_letters
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.health = HealthFile(settings.heartbeat_file)
        self.assigned: set[tuple[str, int]] = set()
        self.totals = Totals()
        self.generations = Generations(store)
        self.epoch: str | None = None
        self.pending_rewind: str | None = None  # "all" or "committed" (partitions past their start)
        self.rewound = False

    def run(self) -> None:
        """Consume until `stop` is set; then store, commit and close."""
        self.consumer.subscribe(
            [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not self.stop.is_set():
                self.step()
        except Stopping:
            log.info("stopping with a batch unwritten; it will be consumed again")
        finally:
            # close() commits the offsets stored so far and leaves the group at once.
            self.consumer.close()
            log.info("consumer closed", extra={"totals": asdict(self.totals)})

    def step(self) -> None:
        """One batch: consume, process, store offsets."""
        messages = self.consumer.consume(self.settings.batch_size, self.settings.batch_timeout_s)
        if messages:
            self.process(messages)
        if self.health.due():
            self._watch_epoch()
            self.health.write(len(self.assigned), self._update_lag())

    def process(self, messages: Sequence[Message]) -> None:
        events: list[Event] = []
        poison: list[tuple[Message, PoisonEvent]] = []
        done: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._log_error(msg, err)
                continue
            done.append(msg)
            try:
                events.append(decode(envelope(msg), self.settings.max_event_bytes))
            except PoisonEvent as bad:
                poison.append((msg, bad))
        self.metrics.batch_size.observe(len(done))
        self.totals.messages += len(done)
        if events:
            self._write(events)
        if poison:
            self.dead_letters.send(poison)
            for _, exc in poison:
                self.metrics.dead_lettered.labels(exc.code).inc()
            self.totals.dead_lettered += len(poison)
        if self.rewound:
            self.rewound = False  # this batch's offsets would jump past the rewind: drop them
            return
        self._store_offsets(done)

    def _write(self, events: list[Event]) -> None:
        # Within a batch only the newest version per user can win; send just those.
        newest = list(newest_per_user(events).values())

        def write() -> int:
            pointer = self._pointer()
            applied = self.store.apply(newest, pointer.live)
            for generation in pointer.targets[1:]:  # a rebuild is filling it: keep it complete
                self.store.apply(newest, generation)
            return applied

        started = time.perf_counter()
        applied = retry_until_done(
            write,
            # KafkaException: a rewind's offset look-ups while the broker restarts.
            (redis.RedisError, KafkaException),
            self.stop,
            "redis write",
            on_retry=lambda _: self.metrics.redis_retries.inc(),
        )
        self.metrics.apply_seconds.observe(time.perf_counter() - started)
        self.metrics.applied.inc(applied)
        self.metrics.stale.inc(len(events) - applied)
        self.totals.applied += applied
        self.totals.stale += len(events) - applied
        if applied:
            self.metrics.last_applied_ts.set_to_current_time()

    def _pointer(self) -> Pointer:
        """The generations to write; notices a new epoch (an empty or wiped Redis) and rewinds."""
        pointer = self.generations.read()
        if pointer is None:
            pointer, created = self.generations.ensure()
            log.warning("Redis has no projection (new or wiped); generation %s started", pointer.live)
            if created and self.pending_rewind is None:
                # We just started on an empty Redis: only partitions that some earlier run
                # already committed past their start hold events the projection lacks.
                self.pending_rewind = "committed"
        if self.epoch is not None and pointer.epoch != self.epoch:
            self.pending_rewind = "all"
        self.epoch = pointer.epoch
        if self.pending_rewind is not None:
            # Kept until the rewind succeeded: a broker error here is retried, not forgotten.
            everything = self.pending_rewind == "all"
            self._rewind(self.consumer.assignment() if everything else self._committed_past_start())
            self.pending_rewind = None
        return pointer

    def _watch_epoch(self) -> None:
        # Once a second even when idle: a flushed or restarted-empty Redis is rebuilt
        # without waiting for the next event.
        if self.assigned:
            with contextlib.suppress(redis.RedisError, KafkaException):
                self._pointer()

    def _committed_past_start(self) -> list[TopicPartition]:
        committed = self.consumer.committed(self.consumer.assignment(), timeout=10)
        return [tp for tp in committed if tp.offset > self.consumer.get_watermark_offsets(tp, timeout=10)[0]]

    def _rewind(self, partitions: list[TopicPartition]) -> None:
        """Re-read these partitions from their first offset: the projection starts empty."""
        if not partitions:
            return
        beginnings = []
        for tp in partitions:
            low, _ = self.consumer.get_watermark_offsets(tp, timeout=10)
            beginnings.append(TopicPartition(tp.topic, tp.partition, low))
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, low))
        if beginnings:
            # Committed now, so a crash before the next commit still starts from the beginning.
            self.consumer.commit(offsets=beginnings, asynchronous=False)
        self.rewound = True
        log.warning(
            "projection epoch changed: re-reading partitions %s from the start",
            sorted(tp.partition for tp in partitions),
        )

    def _store_offsets(self, done: list[Message]) -> None:
        if not done:
            return
        # The next offset to read, per partition: one entry each, however big the batch.
        newest: dict[tuple[str, int], int] = {}
        for msg in done:
            tp = (msg.topic() or "", msg.partition() or 0)
            newest[tp] = max(newest.get(tp, -1), msg.offset() or 0)
        offsets = [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in newest.items()]
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # The partition was revoked or lost meanwhile: its new owner re-reads
            # from the committed offset, which is what at-least-once requires.
            log.warning("offsets not stored: %s", exc)

    def _update_lag(self) -> int:
        """Per-partition lag from the last fetch's high watermark (no broker round trip)."""
        total = 0
        partitions = [TopicPartition(t, p) for t, p in self.assigned]
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

    def _log_error(self, msg: Message, err: KafkaError) -> None:
        level = logging.ERROR if err.fatal() else logging.WARNING
        log.log(
            level,
            "kafka error: %s",
            err.str(),
            extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()},
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("partitions assigned", extra={"partitions": sorted(p.partition for p in partitions)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log.info("partitions revoked", extra={"partitions": sorted(p.partition for p in partitions)})
        try:
            # Hand over exactly what was written: commit stored offsets before giving them up.
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit on revoke failed: %s", exc)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self.assigned -= {(p.topic, p.partition) for p in partitions}
        for p in partitions:
            with contextlib.suppress(KeyError):  # never measured yet
                self.metrics.lag.remove(str(p.partition))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost (not revoked): another member may already own them; committing now
        # could move their offsets backwards, so stored offsets are discarded.
        self._forget(partitions)
        log.warning("partitions lost", extra={"partitions": sorted(p.partition for p in partitions)})
