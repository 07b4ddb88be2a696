"""Rebuild the projection as a new generation (from Kafka's earliest offsets and/or MySQL), then flip.

Order matters: the rebuild's claim is set *before* the end offsets are read, so every
event at or past those offsets is consumed by live consumers after they saw the claim
and written to the new generation too; the replay covers everything before them.
The flip hands the live generation's positions to the new one (adapters/generations.py).
Kafka-only rebuilds need the topic kept forever or compacted (README).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from adapters.generations import Generations
from adapters.kafka import consumer_config
from adapters.mysql import MySQLUsers
from adapters.settings import Settings
from adapters.store import ProjectionStore
from consumer.decode import Envelope, PoisonEvent, decode
from consumer.lease import Lease
from consumer.loop import envelope
from consumer.progress import Progress
from domain import UserAdded, Version, newest_per_user
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


class Interrupted(Exception):
    """SIGTERM or SIGINT during a rebuild: its claim is given up and its generation deleted."""


@dataclass(frozen=True)
class Plan:
    live: int | None
    target: int
    partitions: dict[int, tuple[int, int]]  # partition -> (first offset, end offset)
    mysql_rows: int

    @property
    def kafka_events(self) -> int:
        return sum(end - low for low, end in self.partitions.values())


@dataclass(frozen=True)
class Result:
    target: int
    kafka_events: int
    mysql_rows: int
    poison_skipped: int
    deleted_old_keys: int
    seconds: float


class Rebuild:
    """One rebuild of the projection; clients are passed in."""

    def __init__(
        self,
        settings: Settings,
        store: ProjectionStore,
        mysql: MySQLUsers | None,
        from_kafka: bool = True,
        tty: bool | None = None,
        stop: threading.Event | None = None,
        on_poison: Callable[[Envelope, PoisonEvent], None] | None = None,
    ) -> None:
        """`on_poison` sees each message the replay skips as poison (what the live consumers dead-lettered)."""
        self.settings = settings
        self.store = store
        self.generations = Generations(store)
        self.mysql = mysql
        self.from_kafka = from_kafka
        self.tty = tty
        self.poison = 0
        self.on_poison = on_poison
        self.stop = stop or threading.Event()
        self.lease: Lease | None = None

    def plan(self) -> Plan:
        """What a rebuild would do now (used by --dry-run, and re-read after the mark for real runs)."""
        pointer = self.generations.read()
        live = pointer.live if pointer else None
        target = max(live or 0, (pointer.building or 0) if pointer else 0) + 1
        partitions = self._watermarks() if self.from_kafka else {}
        rows = self.mysql.count() if self.mysql else 0
        return Plan(live, target, partitions, rows)

    def run(self) -> Result:
        started = time.monotonic()
        swept = self.generations.sweep()  # what killed rebuilds left behind
        if swept:
            log.warning("deleted %s keys of abandoned generations", swept)
        lease_ms = int(self.settings.rebuild_lease_s * 1000)
        target, claim = self.generations.start(lease_ms)
        pointer = self.generations.read()
        assert pointer is not None
        try:
            with Lease(self.generations, claim, lease_ms) as lease:
                self.lease = lease
                plan = Plan(
                    pointer.live,
                    target,
                    self._watermarks() if self.from_kafka else {},
                    self.mysql.count() if self.mysql else 0,
                )
                log.info(
                    "rebuilding generation %s while %s serves reads",
                    target,
                    pointer.live,
                    extra={"kafka_events": plan.kafka_events, "mysql_rows": plan.mysql_rows},
                )
                if self.mysql:
                    self._from_mysql(plan)
                if self.from_kafka:
                    self._from_kafka(plan)
                lease.check()
                old = self.generations.flip(claim, target, pointer.epoch)
        except BaseException:
            self._abandon(claim, target)
            raise
        log.info("generation %s is live; deleting generation %s", target, old)
        # Readers cache the pointer for generation_cache_s: let them move before N goes.
        self.stop.wait(self.settings.generation_cache_s * 2 + 0.5)
        deleted = self.generations.sweep()
        return Result(target, plan.kafka_events, plan.mysql_rows, self.poison, deleted, time.monotonic() - started)

    def _abandon(self, claim: str, target: int) -> None:
        """Give the claim up and delete what was built, each step tried even if the other failed.

        The sweep spares the live generation (so a flip that ran before the error is kept)
        and a claimed one: if the claim could not be given up, its lease expires and the
        next sweep (`ums-find gc`, or any replay) deletes the generation.
        """
        try:
            self.generations.abandon(claim)
        except Exception:
            log.warning("could not give up the claim %s; its lease will expire", claim, exc_info=True)
        try:
            self.generations.sweep(only=target)
        except Exception:
            log.warning("could not delete generation %s; the next gc will", target, exc_info=True)

    def _check(self) -> None:
        """Between batches: stop on SIGTERM/SIGINT, and stop writing once the claim is lost."""
        if self.stop.is_set():
            raise Interrupted("stop requested: abandoning the rebuild")
        if self.lease is not None:
            self.lease.check()

    def _watermarks(self) -> dict[int, tuple[int, int]]:
        consumer = self._consumer()
        try:
            topic = consumer.list_topics(self.settings.topic, timeout=10).topics[self.settings.topic]
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self.settings.topic, p), timeout=10)
                for p in sorted(topic.partitions)
            }
        finally:
            consumer.close()

    def _consumer(self) -> Consumer:
        config = consumer_config(
            self.settings,
            **{"group.id": f"{self.settings.group_id}-replay", "enable.auto.commit": False, "fetch.wait.max.ms": 10},
        )
        return Consumer(config)

    def _apply(self, events: Iterable[Event], generation: int) -> None:
        self.store.apply(list(newest_per_user(events).values()), generation, REPLAY_KEYS_PER_CALL)

    def _from_mysql(self, plan: Plan) -> None:
        assert self.mysql is not None
        # Closed on the way out, interrupted or not, whatever else holds the generator.
        with (
            Progress(plan.mysql_rows, "backfill from MySQL", self.tty) as progress,
            contextlib.closing(self.mysql.stream(2000)) as pages,
        ):
            for users in pages:
                self._check()
                self._apply((UserAdded(u, Version.from_mysql(u.since_ms)) for u in users), plan.target)
                progress.update(len(users))

    def _from_kafka(self, plan: Plan) -> None:
        todo = {p: end for p, (low, end) in plan.partitions.items() if end > low}
        if not todo:
            return
        consumer = self._consumer()
        consumer.assign([TopicPartition(self.settings.topic, p, plan.partitions[p][0]) for p in todo])
        # One write in flight: Redis applies batch N while this thread decodes batch N+1
        # (the GIL is released while redis-py waits on the socket). Nothing flips before
        # the last write returned, and a failed write fails the rebuild.
        pending: Future[None] | None = None
        try:
            with (
                Progress(plan.kafka_events, "replay from Kafka", self.tty) as progress,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-write") as writer,
            ):
                while todo:
                    self._check()
                    events, seen = self._decode_batch(consumer, todo)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(self._apply, events, plan.target)
                    progress.update(seen)
                    # Done by position, not by last offset seen: compaction leaves gaps.
                    for tp in consumer.position([TopicPartition(self.settings.topic, p) for p in todo]):
                        if tp.offset >= todo[tp.partition]:
                            del todo[tp.partition]
                if pending is not None:
                    pending.result()
        finally:
            consumer.close()

    def _decode_batch(self, consumer: Consumer, todo: dict[int, int]) -> tuple[list[Event], int]:
        """The next batch's events below each partition's end offset, and how many messages that was."""
        events: list[Event] = []
        seen = 0
        max_bytes, max_skew_ms = self.settings.max_event_bytes, self.settings.max_skew_ms  # a property: once
        for msg in consumer.consume(REPLAY_BATCH, 0.5):
            if msg.error():
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
