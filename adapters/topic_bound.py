"""The event topic's guard against far-future timestamps: the broker's `message.timestamp.after.max.ms`.

Decoding never reads a clock (docs/decisions.md, "The determinism rule"), so a message
stamped far ahead would be a valid event whose version beats every later one of its user.
The one place that knows "now" legitimately is the broker at append time: with this topic
setting (Kafka >= 3.6, KIP-937) it refuses a CreateTime more than the bound ahead of its own
clock (INVALID_TIMESTAMP). `ums-find topics` sets it to UMS_MAX_CLOCK_SKEW_S; the consumer
reads it beside consuming (asking again until the broker answers) and warns when it is missing
or looser, without changing what it writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

log = logging.getLogger(__name__)

AFTER_MAX = "message.timestamp.after.max.ms"
TIMESTAMP_TYPE = "message.timestamp.type"


@dataclass(frozen=True)
class TimestampBound:
    """What the broker enforces on a topic's timestamps ahead of its clock."""

    log_append_time: bool  # the broker stamps every message itself: nothing can be ahead
    after_max_ms: int | None  # None: the broker does not know the setting (Kafka < 3.6)

    def problem(self, skew_ms: int) -> str | None:
        """Why a far-future timestamp could reach consumers, or None when the broker refuses it."""
        if self.log_append_time:
            return None
        if self.after_max_ms is None:
            return f"the broker has no {AFTER_MAX} (Kafka < 3.6): nothing refuses a timestamp far ahead"
        if self.after_max_ms > skew_ms:
            return f"{AFTER_MAX}={self.after_max_ms} is looser than UMS_MAX_CLOCK_SKEW_S ({skew_ms} ms)"
        return None


def topic_config(config: dict[str, str], skew_ms: int) -> dict[str, str]:
    """The settings `ums-find topics` creates the event topic with."""
    return {**config, AFTER_MAX: str(skew_ms)}


def read_bound(admin: AdminClient, topic: str, timeout: float = 10.0) -> TimestampBound:
    """The topic's effective bound (its own, or the broker's default). Raises KafkaException."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    after = entries.get(AFTER_MAX)
    kind = entries.get(TIMESTAMP_TYPE)
    return TimestampBound(
        log_append_time=kind is not None and kind.value == "LogAppendTime",
        after_max_ms=int(after.value) if after is not None and after.value is not None else None,
    )


def tighten_bound(admin: AdminClient, topic: str, skew_ms: int, timeout: float = 30.0) -> bool:
    """Set the topic's bound to `skew_ms` when it is missing or looser; True when it was changed."""
    bound = read_bound(admin, topic, timeout)
    if bound.problem(skew_ms) is None:
        return False
    if bound.after_max_ms is None:
        log.error("topic %s: %s; upgrade the brokers to guard it", topic, bound.problem(skew_ms))
        return False
    entry = ConfigEntry(AFTER_MAX, str(skew_ms), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin.incremental_alter_configs([resource], request_timeout=timeout)[resource].result(timeout)
    log.info("topic %s: %s set to %s (was %s)", topic, AFTER_MAX, skew_ms, bound.after_max_ms)
    return True


# Values of the consumer's ums_consumer_timestamp_guard gauge.
GUARDED, UNGUARDED, UNKNOWN = 1, 0, -1


def check_bound(admin: AdminClient, topic: str, skew_ms: int, timeout: float = 5.0, quiet: bool = False) -> int:
    """Warn when the broker would let a far-future timestamp through; return GUARDED, UNGUARDED or UNKNOWN.

    `quiet`: an unreadable bound is logged at DEBUG only (the caller asks again).
    """
    try:
        problem = read_bound(admin, topic, timeout).problem(skew_ms)
    except (KafkaException, TimeoutError) as exc:
        # Authorizer without DESCRIBE_CONFIGS, broker unreachable: say so, consume anyway.
        log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "topic %s: could not read %s (%s); far-future timestamps may not be refused",
            topic,
            AFTER_MAX,
            exc,
        )
        return UNKNOWN
    if problem is None:
        return GUARDED
    log.warning(
        "topic %s: %s. A message stamped further ahead would be a valid event whose version beats every later"
        " event of its user until that time; run `ums-find topics` to set the bound. What is projected does not"
        " change because of this.",
        topic,
        problem,
    )
    return UNGUARDED


def watch_bound(
    admin: AdminClient,
    topic: str,
    skew_ms: int,
    report: Callable[[int], None],
    stop: threading.Event,
    retry_s: float = 5.0,
    patience: int = 6,
) -> threading.Thread:
    """Check the bound in the background, asking again until the broker answers; each result goes to `report`.

    In the background so that an unreachable broker never delays consuming; asked again because a
    topic created a moment ago (`make run`, a fresh cluster) is briefly unknown to describe_configs.
    The "could not read" warning comes once, after `patience` tries.
    """

    def run() -> None:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            state = check_bound(admin, topic, skew_ms, quiet=attempt != patience)
            report(state)
            if state != UNKNOWN or stop.wait(retry_s if attempt < patience else 12 * retry_s):
                return

    report(UNKNOWN)  # until the broker answers
    thread = threading.Thread(target=run, name="timestamp-bound", daemon=True)
    thread.start()
    return thread
