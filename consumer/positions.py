"""Where each assigned partition resumes: the live generation's positions, kept in Redis.

Kafka's committed offsets are monitoring only. A partition is positioned at the next
offset the live generation recorded for it, or at its beginning when it has none; so a
wiped Redis, a new epoch and a flipped generation are one case, whoever notices it. A Redis
that comes back holding less than it acknowledged (same pointer, positions behind what was
last known stored) is the same case for the partitions it set back. Each position carries the
leader epoch of the message before it, so a log that lost it is found (consumer/truncation.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from adapters.generations import Generations, Pointer, PositionsWentBack
from consumer.gaps import DeletedUnread
from consumer.lineage import Lineage
from consumer.truncation import Continuity

log = logging.getLogger(__name__)


def resume_at(topic: str, partition: int, stored: Mapping[int, tuple[int, int]]) -> TopicPartition:
    """Where a partition resumes: its stored offset with the leader epoch before it (librdkafka
    checks the log still holds it, KIP-320), or its beginning."""
    offset, epoch = stored.get(partition, (OFFSET_BEGINNING, -1))
    return TopicPartition(topic, partition, offset, leader_epoch=epoch)


class Positions:
    """Positions of one consumer's assigned partitions against one pointer (`positioned`)."""

    def __init__(
        self,
        consumer: Consumer,
        generations: Generations,
        topic: str,
        on_rewind: Callable[[], None] = lambda: None,
        on_deleted: Callable[[int], None] = lambda n: None,
        lineage: Lineage | None = None,
        on_truncated: Callable[[int], None] = lambda n: None,
    ) -> None:
        """`on_rewind`: Redis lost writes; `on_deleted`: how many events the broker deleted unread;
        `lineage`: the topic id check (consumer/lineage.py), none without it; `on_truncated`: how
        many offsets a partition's log went back by (consumer/truncation.py)."""
        self.consumer = consumer
        self.generations = generations
        self.topic = topic
        self.on_rewind = on_rewind
        self.lineage = lineage or Lineage(None, generations)
        # Checks each partition's first message after it was positioned (consumer/gaps.py).
        self.deleted = DeletedUnread(consumer, topic, on_deleted)
        self.continuity = Continuity(topic, on_truncated, self.lineage.replaced)
        self.assigned: set[int] = set()
        # The pointer every assigned partition was positioned against (None: reposition all).
        self.positioned: Pointer | None = None
        # Per partition, the position last known stored under `positioned` (-1: none). No one
        # moves a position back under one pointer, so Redis holding less means it lost writes.
        self.floors: dict[int, int] = {}

    def current(self) -> Pointer:
        """The pointer; creates generation 1 when Redis holds no projection (new or wiped)."""
        pointer = self.generations.read()
        if pointer is None:
            pointer, created = self.generations.ensure()
            if created:
                log.warning("Redis holds no projection (new or wiped): generation %s started", pointer.live)
        return pointer

    def in_step(self, pointer: Pointer) -> bool:
        return self.positioned is not None and self.positioned.tag == pointer.tag

    def reposition(self, pointer: Pointer) -> None:
        """Seek every assigned partition to `pointer`'s positions (or its beginning). Redis or Kafka may raise."""
        stored = self._stored(pointer, self.assigned)
        covered = self._covered(pointer, stored, self.assigned)
        self.floors = {}
        for partition in sorted(self.assigned):
            at = resume_at(self.topic, partition, stored)
            self.consumer.seek(at)
            self._expect(at, partition in stored, covered)
        previous = self.positioned
        self.positioned = pointer
        if previous is not None:
            log.warning(
                "projection changed (%s -> %s): partitions %s resume from generation %s's positions",
                previous.tag,
                pointer.tag,
                sorted(self.assigned),
                pointer.live,
                extra={"positions": {p: offset for p, (offset, _) in stored.items()}},
            )

    def _stored(self, pointer: Pointer, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
        """The live generation's positions of `partitions` with their leader epochs, once they are known
        to be the topic's now. Partitions positioned before on other positions (a cleared
        generation) are repositioned."""
        if self.lineage.check(pointer.live):
            self.positioned = None
        return self.generations.resume_points(pointer.live, partitions)

    def _expect(self, at: TopicPartition, saved: bool, covered: bool) -> None:
        """What the partition's floor and checks expect once it resumes at `at` (`saved`: at a stored
        position, not its beginning)."""
        self.floors[at.partition] = at.offset if saved else -1
        self.continuity.expect(at.partition, at.offset, -1 if at.leader_epoch is None else at.leader_epoch)
        if saved or not covered:
            self.deleted.expect(at.partition, at.offset)

    def topic_moved(self) -> bool:
        """The topic's id changed since the last positioning: the next step repositions."""
        return self.lineage.moved()

    def _covered(self, pointer: Pointer, stored: Mapping[int, object], partitions: Iterable[int]) -> bool:
        """Whether a partition read from its beginning needs no check against a deleted start: the live
        generation was filled from a MySQL snapshot, which holds what those events did."""
        return any(p not in stored for p in partitions) and self.generations.over_mysql(pointer.live)

    def save(self, pointer: Pointer, offsets: dict[int, int], epochs: Mapping[int, int] | None = None) -> bool:
        """Record the batch's next offsets (with the leader epochs before them) in the live generation;
        False when the pointer moved or Redis went back (the next step repositions before writing)."""
        try:
            saved = self.generations.save_positions(pointer, offsets, self.floors, self.lineage.positioned_on, epochs)
        except PositionsWentBack as back:
            self._went_back(pointer, back.behind)
            return False
        if saved:
            for partition, offset in offsets.items():
                self.floors[partition] = max(self.floors.get(partition, -1), offset)
            self._store_kafka_offsets(offsets)
            return True
        self.positioned = None
        return False

    def went_back(self, pointer: Pointer) -> bool:
        """The idle check (a busy consumer's next save makes it): True when the next step must
        reposition, because Redis lost writes or the pointer moved since it was read."""
        try:
            # The save script with nothing to save: floors checked against the pointer in one step.
            in_step = self.generations.save_positions(pointer, {}, self.floors, self.lineage.positioned_on)
        except PositionsWentBack as back:
            self._went_back(pointer, back.behind)
            return True
        if not in_step:
            self.positioned = None
        return not in_step

    def _went_back(self, pointer: Pointer, behind: Mapping[int, tuple[int, int]]) -> None:
        self.positioned = None
        log.error(
            "Redis lost writes it had acknowledged (restarted from an older snapshot, or a replica promoted"
            " before it caught up): partitions %s lost positions or a batch's data; every partition"
            " resumes from generation %s's positions",
            sorted(behind),
            pointer.live,
            extra={"behind": {p: {"known": k, "found": f} for p, (k, f) in behind.items()}},
        )
        self.on_rewind()

    def _store_kafka_offsets(self, offsets: dict[int, int]) -> None:
        # Committed offsets only feed lag monitoring; where to resume is read from Redis.
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()])
        except KafkaException as exc:
            log.debug("offsets not stored for monitoring: %s", exc)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start new partitions at the live generation's positions (the Kafka Connect sink way)."""
        self.assigned |= {tp.partition for tp in partitions}
        try:
            pointer = self.current()
            stored = self._stored(pointer, [tp.partition for tp in partitions])
            covered = self._covered(pointer, stored, [tp.partition for tp in partitions])
        except redis.RedisError as exc:
            # No position known yet: the loop repositions every partition once Redis answers.
            log.warning("positions unreadable on assignment (%r): repositioning later", exc)
            self.positioned = None
            consumer.incremental_assign(partitions)
            return
        if self.positioned is None and len(self.assigned) == len(partitions):
            self.positioned = pointer  # a first assignment: every partition starts here
        elif self.positioned is None or self.positioned.tag != pointer.tag:
            self.positioned = None  # older partitions follow an older pointer: reposition all
        starts = [resume_at(self.topic, tp.partition, stored) for tp in partitions]
        for at in starts:
            self._expect(at, at.partition in stored, covered)
        log.info(
            "partitions assigned",
            extra={"partitions": sorted(tp.partition for tp in partitions), "generation": pointer.live},
        )
        consumer.incremental_assign(starts)
        self._check_epochs(consumer, [at for at in starts if at.leader_epoch is not None])

    def _check_epochs(self, consumer: Consumer, starts: list[TopicPartition]) -> None:
        """Seek the just assigned partitions to their positions again. librdkafka checks a position's
        leader epoch on a seek, and on an assignment only when it learns the partition's leader after
        it (probed with 2.16): a group member knows it already (consumer/truncation.py)."""
        try:
            for at in starts:
                consumer.seek(at)
        except KafkaException as exc:  # not started yet (a stop still under way): the next step seeks
            log.info("partitions %s repositioned at the next step (%s)", [at.partition for at in starts], exc)
            self.positioned = None

    def forget(self, partitions: list[TopicPartition]) -> None:
        self.assigned -= {tp.partition for tp in partitions}
        self.deleted.forget(tp.partition for tp in partitions)
        self.continuity.forget(tp.partition for tp in partitions)
        for tp in partitions:
            self.floors.pop(tp.partition, None)
