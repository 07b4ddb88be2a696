"""Rebuild the projection as a new generation (from Kafka's earliest offsets and/or MySQL), then flip.

Order matters: the rebuild's claim is set *before* the end offsets are read, so every
event at or past those offsets is consumed by live consumers after they saw the claim
and written to the new generation too; the replay covers everything before them.
The flip hands the live generation's positions to the new one (adapters/generations.py).
Kafka-only rebuilds need the topic kept forever or compacted (README): one whose log no longer
starts at offset 0 is refused (TruncatedLog) rather than flipped without the deleted users.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from adapters.clients import kafka_admin
from adapters.diagnose import OutOfMemoryError
from adapters.eviction import memory_note
from adapters.generations import ClaimLost, Generations
from adapters.lineage import TopicRecord, topic_id
from adapters.mysql import MySQLUsers
from adapters.settings import Settings
from adapters.store import ProjectionStore
from consumer.decode import Envelope, PoisonEvent
from consumer.governor import governor, probing
from consumer.lease import Lease
from consumer.pace import Pace, keyed_rate
from consumer.progress import Progress
from consumer.replay_kafka import Interrupted, PartitionReplay, apply_marked, replay_consumer
from consumer.replay_workers import in_processes, split
from domain import UserAdded, Version

log = logging.getLogger(__name__)
__all__ = ["Interrupted", "Plan", "Rebuild", "RedisFull", "Result", "TruncatedLog"]


class RedisFull(Exception):
    """Redis reached its maxmemory during a rebuild (noeviction refuses writes); the rebuild was abandoned."""


class TruncatedLog(Exception):
    """A Kafka-only rebuild refused: the topic lost its first events, so the rebuild would lose their users."""

    def __init__(self, starts: dict[int, int]) -> None:
        self.starts = starts  # partition -> its first offset, for those above 0
        where = ", ".join(f"partition {p} starts at offset {low}" for p, low in sorted(starts.items()))
        super().__init__(
            f"the topic no longer holds its first events ({where}: retention or DeleteRecords deleted them);"
            " a rebuild from it would drop every user whose events are gone. Rebuild with --source both"
            " (a MySQL snapshot, then the topic on top)"
        )


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
        if settings.replay_workers < 1:
            raise ValueError("UMS_REPLAY_WORKERS must be >= 1")
        self.settings = settings
        self.store = store
        self.generations = Generations(store)
        self.mysql = mysql
        self.from_kafka = from_kafka
        self.tty = tty
        self.poison = 0
        self.mysql_rows = 0  # rows written from MySQL so far (marked, and checked by the flip)
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
        lease_ms = int(self.settings.rebuild_lease_s * 1000)
        try:
            swept = self.generations.sweep()  # what killed rebuilds left behind
            target, claim = self.generations.start(lease_ms)
        except OutOfMemoryError:
            raise RedisFull(
                f"Redis is full before this rebuild wrote anything ({memory_note(self.store.client) or 'maxmemory'}):"
                " the live projection, or what else it holds, fills it; free memory (`ums-find gc` deletes"
                " abandoned generations) or raise maxmemory; nothing was claimed"
            ) from None
        if swept:
            log.warning("deleted %s keys of abandoned generations", swept)
        pointer = self.generations.read()
        if pointer is None:  # Redis wiped between the claim and this read: the claim went with it
            raise ClaimLost(f"the claim on generation {target} is gone (the pointer vanished right after the claim)")
        try:
            with Lease(self.generations, claim, lease_ms) as lease:
                self.lease = lease
                self.generations.set_pace(self.settings.rebuild_events_per_s)  # what `ums-find pace` shows
                self._stamp(target)
                plan = Plan(
                    pointer.live,
                    target,
                    self._watermarks() if self.from_kafka else {},
                    self.mysql.count() if self.mysql else 0,
                )
                self._refuse_truncated(plan)
                log.info(
                    "rebuilding generation %s while %s serves reads",
                    target,
                    pointer.live,
                    extra={
                        "kafka_events": plan.kafka_events,
                        "mysql_rows": plan.mysql_rows,
                        "pace_events_per_s": self.settings.rebuild_events_per_s or None,
                    },
                )
                if self.mysql:
                    self._from_mysql(plan)
                if self.from_kafka:
                    self._from_kafka(plan)
                lease.check()
                old = self.generations.flip(claim, target, pointer.epoch, self._filled(plan))
        except BaseException as failure:
            full = None
            try:
                # How full, read before the abandoned generation is deleted and the figures fall back.
                full = memory_note(self.store.client) if isinstance(failure, OutOfMemoryError) else None
            finally:
                self._abandon(claim, target)
            if full is not None:
                raise self._full(full) from None
            raise
        log.info("generation %s is live; deleting generation %s", target, old)
        # Readers cache the pointer for generation_cache_s: let them move before N goes.
        self.stop.wait(self.settings.generation_cache_s * 2 + 0.5)
        deleted = self.generations.sweep()
        return Result(target, plan.kafka_events, plan.mysql_rows, self.poison, deleted, time.monotonic() - started)

    @staticmethod
    def _full(note: str) -> RedisFull:
        return RedisFull(
            f"Redis is full ({note or 'maxmemory reached'}): a rebuild holds two generations, the live one and the"
            " one it writes, so Redis needs room for about twice the projection (docs/capacity.md); raise maxmemory"
            " and run it again; nothing flipped, its generation deleted"
        )

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

    def _refuse_truncated(self, plan: Plan) -> None:
        """Kafka alone must hold every event: the flip would otherwise delete what only the old generation has."""
        starts = {p: low for p, (low, _) in plan.partitions.items() if low > 0}
        if self.mysql is None and starts:
            raise TruncatedLog(starts)

    def _filled(self, plan: Plan) -> dict[str, int]:
        """The marks a whole rebuild leaves (the flip refuses less): every partition's end, MySQL's rows."""
        filled = {str(p): end for p, (low, end) in plan.partitions.items() if end > low}
        if self.mysql_rows:
            filled["mysql"] = self.mysql_rows
        return filled

    def _check(self) -> None:
        """Between batches: stop on SIGTERM/SIGINT, and stop writing once the claim is lost."""
        if self.stop.is_set():
            raise Interrupted("stop requested: abandoning the rebuild")
        if self.lease is not None:
            self.lease.check()

    def _pace(self, target: int, probe: Any) -> Pace:
        """UMS_REBUILD_EVENTS_PER_S, then what `ums-find pace` sets, and the governor under it reading
        `probe`'s windows (UMS_REBUILD_REDIS_DELAY_MS); its sleep ends at once on SIGTERM/SIGINT."""
        source = keyed_rate(self.generations, target)
        limit = governor(self.settings, probe)
        return Pace(self.settings.rebuild_events_per_s, sleep=self.stop.wait, source=source, governor=limit)

    def _stamp(self, target: int) -> None:
        """Record the topic whose offsets the generation will hold: asked before its watermarks, so a
        topic replaced in between leaves the older id, and consumers read the new one from its start."""
        topic = topic_id(kafka_admin(self.settings), self.settings.topic)
        if topic is not None:
            TopicRecord(self.generations).stamp(target, topic)

    def _watermarks(self) -> dict[int, tuple[int, int]]:
        consumer = replay_consumer(self.settings)
        try:
            topic = consumer.list_topics(self.settings.topic, timeout=10).topics[self.settings.topic]
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self.settings.topic, p), timeout=10)
                for p in sorted(topic.partitions)
            }
        finally:
            consumer.close()

    def _from_mysql(self, plan: Plan) -> None:
        assert self.mysql is not None
        # Closed on the way out, interrupted or not, whatever else holds the generator.
        with (
            Progress(plan.mysql_rows, "backfill from MySQL", self.tty) as progress,
            contextlib.closing(self.mysql.stream(2000)) as pages,
            probing(self.settings) as probe,
        ):
            pace = self._pace(plan.target, probe)
            self.mysql_rows = 0
            for users in pages:
                self._check()
                marked = {"mysql": self.mysql_rows} if self.mysql_rows else {}
                added = (UserAdded(u, Version.from_mysql(u.since_ms)) for u in users)
                rows = {"mysql": self.mysql_rows + len(users)}
                apply_marked(self.store, self.generations, added, plan.target, rows, marked)
                self.mysql_rows += len(users)
                progress.update(len(users))
                pace.after(len(users))

    def _from_kafka(self, plan: Plan) -> None:
        with (
            Progress(plan.kafka_events, "replay from Kafka", self.tty) as progress,
            probing(self.settings) as probe,  # one per rebuild: its workers share its windows
        ):
            groups = split(plan.partitions, self.settings.replay_workers)
            if len(groups) > 1:
                log.info("replaying %d partitions in %d processes", sum(map(len, groups)), len(groups))
                self.poison += in_processes(
                    self.settings,
                    plan.target,
                    groups,
                    self._check,
                    progress.update,
                    self.on_poison,
                    probe,
                    kafka_only=self.mysql is None,
                )
            elif groups:
                replay = PartitionReplay(
                    self.settings,
                    self.store,
                    plan.target,
                    groups[0],
                    self._check,
                    progress.update,
                    self.on_poison,
                    self._pace(plan.target, probe),
                    kafka_only=self.mysql is None,
                )
                self.poison += replay.run()
