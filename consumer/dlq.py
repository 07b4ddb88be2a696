"""The dead-letter topic: poison messages go there with their reason, and only then count as done."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicCollection
from confluent_kafka.admin import AdminClient

from consumer.decode import PoisonEvent
from consumer.retry import Stopping, retry_until_done

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The broker did not acknowledge every dead letter."""


# Brokers accept 1 MB messages by default; a dead letter keeps at most this much of
# the original value so that the DLQ write itself can never be refused for size.
MAX_DEAD_VALUE = 900 * 1024
# A topic the broker does not have (and will not create: auto.create.topics.enable=false).
MISSING = {KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART}


def dead_letter_headers(msg: Message, poison: PoisonEvent) -> list[tuple[str, str | bytes | None]]:
    _, timestamp = msg.timestamp()
    value = msg.value()
    truncated = value is not None and len(value) > MAX_DEAD_VALUE
    return [
        ("ums.value.truncated", b"true" if truncated else b"false"),
        ("ums.error.class", poison.code.encode()),
        ("ums.error.message", str(poison)[:1000].encode()),
        ("ums.original.topic", (msg.topic() or "").encode()),
        ("ums.original.partition", str(msg.partition()).encode()),
        ("ums.original.offset", str(msg.offset()).encode()),
        ("ums.original.timestamp", str(timestamp).encode()),
    ]


class DeadLetters:
    """Publishes poison messages to `<topic>.dlq`; `send` returns once the broker acknowledged each one.

    Each message is produced once and tracked by its own delivery report; only a message
    whose report is an error is produced again (the idempotent producer already retries
    inside librdkafka), so a slow broker delays the stream without duplicating dead letters.
    A full local queue is answered by serving delivery reports and trying again.
    """

    def __init__(self, producer: Producer, topic: str, stop: threading.Event, timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.topic = topic
        self.stop = stop
        self.timeout_s = timeout_s
        self._on_wait: Callable[[], None] = lambda: None
        self._said_missing = False

    def check_topic(self, admin: AdminClient, timeout: float = 5.0, tries: int = 3) -> bool:
        """At start, beside consuming: False (and one ERROR line) when the broker says the dead-letter topic
        does not exist, `tries` times a second apart (a topic created a moment ago may be unknown for one).

        Described, not looked up through the producer, whose metadata request would create the topic
        with the broker's defaults where the broker allows it. Advisory: a broker that does not answer
        (down, or refusing our credentials) is the loop's to wait for and to report.
        """
        for attempt in range(tries):
            future = admin.describe_topics(TopicCollection([self.topic]), request_timeout=timeout)[self.topic]
            try:
                future.result(timeout)
                return True
            except (KafkaException, TimeoutError) as exc:
                missing = isinstance(exc, KafkaException) and exc.args[0].code() in MISSING
                if not missing:
                    log.debug("dead-letter topic not checked: %r", exc)
                    return True
            if attempt + 1 < tries and self.stop.wait(1.0):
                return True
        self._say_missing()
        return False

    def _say_missing(self) -> None:
        if not self._said_missing:
            self._said_missing = True
            log.error(
                "dead-letter topic %s does not exist and the broker does not create topics: a poison event"
                " waits, and this consumer's partitions behind it, until it does (after max.poll.interval.ms the"
                " partition moves to another consumer, which waits the same way); run `ums-find topics`",
                self.topic,
            )

    def send(self, items: Sequence[tuple[Message, PoisonEvent]], on_wait: Callable[[], None] | None = None) -> None:
        """Deliver every item, retrying failed ones until acknowledged (raises Stopping on shutdown).

        `on_wait` is called about once a second while waiting (the consumer's heartbeat).
        """
        pending = list(items)
        self._on_wait = on_wait or (lambda: None)
        for msg, poison in pending:  # once per item, not at every retry of a long wait
            log.warning(
                "dead-lettering message: %s",
                poison,
                extra={
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "reason": poison.code,
                },
            )

        def attempt() -> None:
            nonlocal pending
            pending = self._deliver(pending)
            if pending:
                raise DeliveryFailed(f"{len(pending)} dead letters refused by the broker")

        retry_until_done(
            attempt, (DeliveryFailed,), self.stop, "dead-letter delivery", on_retry=lambda _: self._on_wait()
        )

    def _deliver(self, items: list[tuple[Message, PoisonEvent]]) -> list[tuple[Message, PoisonEvent]]:
        """Produce each item once and wait for every report; return those reported failed."""
        reports: dict[int, KafkaError | None] = {}
        for n, (msg, poison) in enumerate(items):
            self._produce(msg, poison, lambda err, _, n=n: reports.__setitem__(n, err))
        waited = time.monotonic()
        while len(reports) < len(items):
            # Waiting, not re-producing: a report that has not come yet is still on its way.
            self.producer.poll(0.1)
            if self.stop.is_set():
                raise Stopping("dead-letter delivery")
            if time.monotonic() - waited > 1.0:
                waited = time.monotonic()
                self._on_wait()
        failed = [item for n, item in enumerate(items) if reports[n] is not None]
        if any(isinstance(err, KafkaError) and err.code() in MISSING for err in reports.values()):
            self._say_missing()
        return failed

    def _produce(self, msg: Message, poison: PoisonEvent, on_delivery: Callable[..., None]) -> None:
        value = msg.value()
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    key=msg.key(),
                    value=value[:MAX_DEAD_VALUE] if value else value,
                    headers=dead_letter_headers(msg, poison),
                    on_delivery=on_delivery,
                )
                return
            except KafkaException as exc:
                if exc.args[0].code() not in MISSING:
                    raise
                # Known missing now (the first attempt waited for it to appear): a refused delivery,
                # tried again with backoff until someone creates the topic.
                on_delivery(exc.args[0], None)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room (backpressure).
                self.producer.poll(0.1)
                self._on_wait()
                if self.stop.is_set():
                    raise Stopping("dead-letter delivery") from None
