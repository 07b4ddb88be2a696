"""The dead-letter topic: poison messages go there with their reason, and only then count as done."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from consumer.decode import PoisonEvent
from consumer.retry import retry_until_done

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The broker did not acknowledge every dead letter."""


# Brokers accept 1 MB messages by default; a dead letter keeps at most this much of
# the original value so that the DLQ write itself can never be refused for size.
MAX_DEAD_VALUE = 900 * 1024


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
    """Publishes poison messages to `<topic>.dlq` and waits for the broker's acknowledgement."""

    def __init__(self, producer: Producer, topic: str, stop: threading.Event, timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.topic = topic
        self.stop = stop
        self.timeout_s = timeout_s

    def send(self, items: Sequence[tuple[Message, PoisonEvent]]) -> None:
        """Deliver every item, retrying until acknowledged (raises Stopping on shutdown)."""
        pending = list(items)

        def attempt() -> None:
            nonlocal pending
            pending = self._deliver(pending)
            if pending:
                raise DeliveryFailed(f"{len(pending)} dead letters not acknowledged")

        retry_until_done(attempt, (DeliveryFailed,), self.stop, "dead-letter delivery")

    def _deliver(self, items: list[tuple[Message, PoisonEvent]]) -> list[tuple[Message, PoisonEvent]]:
        failed: list[tuple[Message, PoisonEvent]] = []
        for item in items:
            msg, poison = item

            def on_delivery(err: KafkaError | None, _: Message, item=item) -> None:  # type: ignore[no-untyped-def]
                if err is not None:
                    failed.append(item)

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
            value = msg.value()
            self.producer.produce(
                self.topic,
                key=msg.key(),
                value=value[:MAX_DEAD_VALUE] if value else value,
                headers=dead_letter_headers(msg, poison),
                on_delivery=on_delivery,
            )
        remaining = self.producer.flush(self.timeout_s)
        if remaining:
            # Undelivered after the timeout: treat all as failed; resending is harmless
            # for a DLQ (at-least-once), losing one is not.
            return items
        return failed
