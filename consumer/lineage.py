"""The event topic's identity, watched: positions saved on a topic that was replaced are never resumed from.

A topic deleted and created again under its name, or its events mirrored to a new cluster, numbers
its events from 0 again. A consumer that resumed at the positions saved on the old one skipped as
many of the new one's events, with no word (seen: 40 of 100 new users never projected, after a
restart and while running alike). The topic id (KIP-516) tells the two apart: it is asked at start
and every CHECK_S beside consuming, and compared with the one recorded for the generation
(adapters/lineage.py) at every positioning once known. Another id there: the generation's positions are
cleared and every partition is read from its beginning. That loses nothing the new topic holds
(the fenced write ignores what the projection already has); what only the old topic held stays
as it was, which `ums-find reconcile` checks against MySQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from adapters.generations import Generations
from adapters.lineage import CLEARED, MOVED, TopicRecord, described_id

log = logging.getLogger(__name__)
# As often as librdkafka refreshes the topic's metadata (adapters/kafka.py METADATA_REFRESH_MS).
CHECK_S = 10.0
# Unanswered asks before the watch says the check is off (a broker without topic ids, an ACL).
PATIENCE = 3


class TopicWatch:
    """The event topic's id now (`current`), asked in the background at once and every `every_s`."""

    def __init__(self, admin: AdminClient, topic: str, stop: threading.Event, every_s: float = CHECK_S) -> None:
        self.admin = admin
        self.topic = topic
        self.stop = stop
        self.every_s = every_s
        self.current: str | None = None
        self.unanswered = 0  # asks in a row without an id
        self._lock = threading.Lock()  # asked by its thread, and by the loop when offsets jump

    def ask(self) -> str | None:
        """Ask the broker now; an answer replaces `current` (None: it did not say)."""
        found, why = described_id(self.admin, self.topic)
        with self._lock:
            return self._heard(found, why)

    def _heard(self, found: str | None, why: str) -> str | None:
        if found is None:
            self.unanswered += 1
            if self.unanswered == PATIENCE:
                log.warning(
                    "topic %s: the broker does not give its id (%s): a replaced topic cannot be told apart"
                    " until it does",
                    self.topic,
                    why,
                )
            return None
        if self.unanswered >= PATIENCE:
            log.info("topic %s: its id is known again", self.topic)
        self.unanswered = 0
        self.current = found
        return found

    def start(self) -> threading.Thread:
        def run() -> None:
            failed = False
            while True:
                try:
                    self.ask()
                except Exception:  # the watch must outlive any one answer; said once
                    log.log(
                        logging.DEBUG if failed else logging.ERROR,
                        "topic %s: its id could not be asked",
                        self.topic,
                        exc_info=True,
                    )
                    failed = True
                if self.stop.wait(self.every_s):
                    return

        thread = threading.Thread(target=run, name="topic-id", daemon=True)
        thread.start()
        return thread


class Lineage:
    """Checks that a generation's positions are offsets of the topic read now (one consumer's view)."""

    def __init__(
        self, watch: TopicWatch | None, generations: Generations, on_replaced: Callable[[], None] = lambda: None
    ) -> None:
        self.watch = watch
        self.record = TopicRecord(generations)
        self.on_replaced = on_replaced
        # The topic id the positions in use were checked against (None: not checked yet).
        self.positioned_on: str | None = None
        self._again_at = 0.0  # monotonic: when an unsettled check may be tried again

    def moved(self) -> bool:
        """The topic's id is known and not the one the positions were checked against: reposition."""
        if self.watch is None or self.watch.current in (None, self.positioned_on):
            return False
        return time.monotonic() >= self._again_at

    def replaced(self) -> bool:
        """Asked now, and waited for (a partition's offsets jumped: a leader change at a gap, or a cut
        log): whether the topic's id is known and not the one the positions were checked against."""
        if self.watch is None or self.positioned_on is None:
            return False
        try:
            current = self.watch.ask()
        except Exception:  # as the watch's thread: an answer that failed says nothing
            log.debug("topic %s: its id could not be asked", self.watch.topic, exc_info=True)
            return False
        return current is not None and current != self.positioned_on

    def check(self, generation: int) -> bool:
        """Before `generation`'s positions are read: make them the current topic's (cleared if not).
        True when the id they are checked against changed (every assigned partition repositions)."""
        watch = self.watch
        if watch is None:
            return False
        before, cleared = self.positioned_on, False
        # Not asked here when unknown: a broker that does not answer would hold the loop for the
        # ask's timeout. The positions stand, under the record they were read with: saves are
        # refused if another consumer clears them meanwhile; checked once the id is known (moved()).
        current = watch.current
        if current is None:
            self.positioned_on = self.record.read(generation)
            return before != self.positioned_on
        for _ in range(3):
            found = self.record.read(generation)
            if found is not None and found != current:
                # Asked again, and waited for (rare: a record another consumer changed): this consumer's
                # id may be the stale one.
                current = watch.ask()
                if current is None:
                    # Unconfirmed: nothing cleared on an id that may be stale; the positions read are the
                    # record's, and so are the saves (SAVE_POSITIONS); checked again after the watch's period.
                    self._again_at = time.monotonic() + watch.every_s
                    self.positioned_on = found
                    return before != found
            if found == current:
                break
            outcome = self.record.adopt(generation, found, current)
            if outcome == CLEARED:
                cleared = True
                self._say_replaced(watch.topic, generation, found, current)
            if outcome != MOVED:
                break
        self.positioned_on = current
        return cleared or before != current

    def _say_replaced(self, topic: str, generation: int, old: str | None, new: str) -> None:
        self.on_replaced()
        log.error(
            "event topic %s is not the topic generation %s's positions were saved on (topic id %s, now %s):"
            " it was deleted and created again, or its events were mirrored to another cluster, and its"
            " offsets start again. Every partition is read again from its beginning; events already"
            " projected change nothing. Users only the old topic held stay as they were: run"
            " `ums-find reconcile` (and `--repair` on drift)",
            topic,
            generation,
            old,
            new,
            extra={"generation": generation, "old_topic_id": old, "topic_id": new},
        )
