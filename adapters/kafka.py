"""Kafka client configuration for ums-find, and topic creation."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from adapters.settings import Settings
from adapters.topic_bound import AFTER_MAX, tighten_bound, topic_config

log = logging.getLogger(__name__)


def security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's security settings: the protocol, SASL credentials, the CA (host names checked)."""
    protocol = settings.kafka_security_protocol.upper()
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": protocol}
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password
    if protocol.endswith("SSL"):
        config["ssl.endpoint.identification.algorithm"] = "https"
        if settings.kafka_ssl_ca_file:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_file
    return config


UNREACHABLE = "broker unreachable (down or restarting?): check UMS_KAFKA_BOOTSTRAP if it lasts"
# What a client error most likely means, for the one log line that says so.
CAUSES = {
    KafkaError._AUTHENTICATION: "authentication failed: check UMS_KAFKA_SASL_USERNAME, _PASSWORD and _MECHANISM",
    KafkaError._SSL: "TLS failed: check UMS_KAFKA_SSL_CA_FILE and the broker's certificate",
    KafkaError._TRANSPORT: "the broker closed the connection: check UMS_KAFKA_SECURITY_PROTOCOL (TLS/SASL expected?)",
    KafkaError._ALL_BROKERS_DOWN: (
        "no broker answered (all down?); if it lasts, check UMS_KAFKA_BOOTSTRAP and UMS_KAFKA_SECURITY_PROTOCOL"
        " (a SASL_SSL listener closes a PLAINTEXT client at once)"
    ),
}


# An OpenSSL failure in librdkafka's text ("error:0A000086:SSL routines::certificate verify failed").
TLS_TEXT = re.compile(r"SSL routines|certificate verify failed|SSL handshake failed")


def kind_of(err: KafkaError) -> int:
    """The error's code, except that a TLS failure librdkafka reports as a transport error is one."""
    # When the handshake fails while reading the broker's reply, librdkafka says _TRANSPORT
    # with OpenSSL's text; a moment later the same failure arrives as _SSL.
    if err.code() == KafkaError._TRANSPORT and TLS_TEXT.search(err.str()):
        return int(KafkaError._SSL)
    return int(err.code())


def kafka_error_logger(every_s: float = 60.0) -> Callable[[KafkaError], None]:
    """librdkafka's error callback: one line per kind of error (again after `every_s`), with its likely cause."""
    last: dict[int, float] = {}

    def on_error(err: KafkaError) -> None:
        now, kind = time.monotonic(), kind_of(err)
        if now - last.get(kind, -every_s) < every_s:
            return
        if kind == KafkaError._ALL_BROKERS_DOWN and (KafkaError._AUTHENTICATION in last or KafkaError._SSL in last):
            return  # the consequence of what was already said
        last[kind] = now
        cause = CAUSES.get(kind, "client error")
        if kind == KafkaError._TRANSPORT and "refused" in err.str().lower():
            cause = UNREACHABLE  # nothing listens there: an outage, not a protocol mismatch
        log.error("kafka: %s (%s)", cause, err.str(), extra={"kafka_error": err.name()})

    return on_error


class RepeatFilter(logging.Filter):
    """Drops a librdkafka line that repeats an earlier one (numbers aside) within `every_s`.

    librdkafka reconnects with a short backoff and logs each failure ("... (after 3ms in
    state ...)"): with a wrong password or CA that is a line every few hundred ms.
    """

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", record.getMessage())
        now = time.monotonic()
        if now - self._seen.get(key, -self.every_s) < self.every_s:
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = now
        return True


def librdkafka_logger() -> logging.Logger:
    """The logger librdkafka's own lines go to (JSON like ours), without repeats."""
    logger = logging.getLogger("librdkafka")
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger


METADATA_REFRESH_MS = 10_000


def consumer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {
        **security_config(settings),
        "group.id": settings.group_id,
        "auto.offset.reset": "earliest",
        # At-least-once: an offset is stored only after Redis (or the DLQ) acknowledged
        # the event; librdkafka then commits stored offsets in the background and on close.
        "enable.auto.offset.store": False,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "partition.assignment.strategy": "cooperative-sticky",
        # A partition owned by a crashed or hung consumer moves after this long.
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(settings.session_timeout_ms // 10, 100),
        "max.poll.interval.ms": 300_000,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 50,
        "queued.max.messages.kbytes": 65_536,
        # Partitions added to the topic are assigned at the next metadata refresh: librdkafka's 5 min
        # default left a new partition's events unread for 298 s (docs/decisions.md, "Partitions added").
        "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
        # Static membership (a pod name): a restarted pod gets its partitions back at once.
        **({"group.instance.id": settings.group_instance_id} if settings.group_instance_id else {}),
        **extra,
    }


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {
        **security_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        # Dead letters carry the original value, which may be as large as the broker allows.
        "message.max.bytes": 2_097_152,
        **extra,
    }


def ensure_topics(settings: Settings, partitions: int | None = None, timeout: float = 30.0) -> None:
    """Create the event topic and its dead-letter topic if missing; bound the event topic's timestamps.

    The event topic gets `message.timestamp.after.max.ms` = UMS_MAX_CLOCK_SKEW_S, at creation
    or (when missing or looser) on an existing topic (adapters/topic_bound.py).
    """
    admin = AdminClient({**security_config(settings), "error_cb": kafka_error_logger()})  # type: ignore[dict-item]
    existing = admin.list_topics(timeout=timeout).topics
    count = partitions or settings.topic_partitions
    guard = topic_config({}, settings.max_skew_ms)
    wanted = [
        NewTopic(name, num_partitions=count, replication_factor=-1, config=guard)
        if name == settings.topic
        else NewTopic(name, num_partitions=1, replication_factor=-1)
        for name in (settings.topic, settings.dead_letter_topic)
        if name not in existing
    ]
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items() if wanted else ():
        try:
            future.result()
            log.info("created topic", extra={"topic": name})
        except KafkaException as exc:
            if exc.args[0].name() == "INVALID_CONFIG" and name == settings.topic:
                _create_unbounded(admin, name, count, timeout, exc)
            elif exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    if settings.topic in existing:
        tighten_bound(admin, settings.topic, settings.max_skew_ms, timeout)


def _create_unbounded(admin: AdminClient, name: str, count: int, timeout: float, why: KafkaException) -> None:
    # A broker older than 3.6 does not know the bound: the topic is still needed.
    log.error("topic %s: created without %s, which the broker refused (%s)", name, AFTER_MAX, why)
    topic = NewTopic(name, num_partitions=count, replication_factor=-1)
    admin.create_topics([topic], request_timeout=timeout)[name].result()
