"""Prometheus metrics of the consumer, registered on a registry passed in (never at import)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ConsumerMetrics:
    applied: Counter
    stale: Counter
    dead_lettered: Counter
    batch_size: Histogram
    apply_seconds: Histogram
    lag: Gauge
    last_applied_ts: Gauge
    redis_retries: Counter
    redis_rewinds: Counter
    deleted_unread: Counter
    deleted_unread_at: Gauge
    replaced: Counter
    replaced_at: Gauge
    truncated: Counter
    truncated_at: Gauge
    timestamp_guard: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        return cls(
            applied=Counter("ums_consumer_events_applied", "Events that changed the projection", registry=registry),
            stale=Counter(
                "ums_consumer_events_stale",
                "Events skipped as duplicate or older than the projection",
                registry=registry,
            ),
            dead_lettered=Counter(
                "ums_consumer_events_dead_lettered",
                "Events sent to the dead-letter topic",
                ["reason"],
                registry=registry,
            ),
            batch_size=Histogram(
                "ums_consumer_batch_size",
                "Messages per consumed batch",
                buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
                registry=registry,
            ),
            apply_seconds=Histogram(
                "ums_consumer_apply_seconds",
                "Time to decode and write one batch to Redis (they overlap: adapters/pipelined.py)",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=registry,
            ),
            lag=Gauge(
                "ums_consumer_lag", "Messages behind the partition's high watermark", ["partition"], registry=registry
            ),
            last_applied_ts=Gauge(
                "ums_consumer_last_applied_timestamp_seconds",
                "Unix time when an event was last applied",
                registry=registry,
            ),
            redis_retries=Counter(
                "ums_consumer_redis_retries", "Batch writes retried after a Redis error", registry=registry
            ),
            redis_rewinds=Counter(
                "ums_consumer_redis_rewinds",
                "Times Redis was found to have lost writes it had acknowledged (positions behind what was"
                " saved, or a batch's fill mark missing: an older snapshot, a lagging replica promoted);"
                " the consumer resumed every partition from the positions Redis holds",
                registry=registry,
            ),
            deleted_unread=Counter(
                "ums_consumer_events_deleted_unread",
                "Offsets the broker had deleted (retention, DeleteRecords) when this consumer came to read"
                " them: events never projected (consumer/gaps.py)",
                registry=registry,
            ),
            deleted_unread_at=Gauge(
                "ums_consumer_events_deleted_unread_last_timestamp_seconds",
                "Unix time when this consumer last found events deleted before it read them (0: never); the"
                " alert reads it, since the counter may move before the pod's first scrape",
                registry=registry,
            ),
            replaced=Counter(
                "ums_consumer_topic_replaced",
                "Times this consumer found the event topic's id changed under the live generation's positions"
                " (deleted and created again, or mirrored to another cluster): it cleared them and read every"
                " partition again from its beginning (consumer/lineage.py)",
                registry=registry,
            ),
            replaced_at=Gauge(
                "ums_consumer_topic_replaced_last_timestamp_seconds",
                "Unix time when this consumer last found the event topic replaced (0: never); the alert"
                " reads it, since the counter may move before the pod's first scrape",
                registry=registry,
            ),
            truncated=Counter(
                "ums_consumer_offsets_truncated",
                "Offsets a partition's log went back by under this consumer: its leader lost them (an"
                " unclean leader election, a broker restored from an older disk) and new events took"
                " them; the consumer read on from the new leader's end (consumer/truncation.py)",
                registry=registry,
            ),
            truncated_at=Gauge(
                "ums_consumer_offsets_truncated_last_timestamp_seconds",
                "Unix time when this consumer last found a partition's log gone back (0: never); the alert"
                " reads it, since the counter may move before the pod's first scrape",
                registry=registry,
            ),
            timestamp_guard=Gauge(
                "ums_consumer_timestamp_guard",
                "1: the broker refuses timestamps further ahead than UMS_MAX_CLOCK_SKEW_S on the event topic;"
                " 0: it does not (missing or looser message.timestamp.after.max.ms);"
                " -1: not known yet (asked again until the broker answers)",
                registry=registry,
            ),
        )

    def events_deleted(self, count: int) -> None:
        """`count` offsets were gone from the topic when this consumer came to read them."""
        self.deleted_unread.inc(count)
        self.deleted_unread_at.set_to_current_time()

    def topic_replaced(self) -> None:
        """The live generation's positions were offsets of another topic than the one read now."""
        self.replaced.inc()
        self.replaced_at.set_to_current_time()

    def log_truncated(self, count: int) -> None:
        """A partition's log went back by `count` offsets under this consumer."""
        self.truncated.inc(count)
        self.truncated_at.set_to_current_time()
