"""The consumer's entry point: build the clients from settings, wire signals, run the loop."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

from adapters.clients import Role, kafka_admin, kafka_consumer, kafka_producer, projection_store
from adapters.eviction import check_eviction
from adapters.settings import Settings
from adapters.topic_bound import watch_bound
from consumer.dlq import DeadLetters
from consumer.lineage import TopicWatch
from consumer.loop import ConsumeLoop
from consumer.metrics import ConsumerMetrics
from domain import use_collation

log = logging.getLogger(__name__)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set `stop`: the loop finishes its batch, stores, commits and closes."""

    def request_stop(signum: int, _: FrameType | None) -> None:
        log.info("signal %s: finishing the batch, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def main(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    """Run the consumer until `stop` is set (by SIGTERM/SIGINT when no event is passed in)."""
    settings = settings or Settings.from_env()
    use_collation(settings.name_collation)
    if stop is None:
        stop = threading.Event()
        stop_on_signals(stop)

    registry = CollectorRegistry()
    metrics = ConsumerMetrics.create(registry)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="0.0.0.0", registry=registry)

    # Advisory: a missing bound is logged and exposed, never a reason to project differently.
    admin = kafka_admin(settings)
    watch_bound(admin, settings.topic, settings.max_skew_ms, metrics.timestamp_guard.set, stop)
    store = projection_store(settings, Role.CONSUMER)
    check_eviction(store.client)  # advisory, like the bound: said once, never a reason not to project
    producer = kafka_producer(settings)
    dead_letters = DeadLetters(producer, settings.dead_letter_topic, stop)
    # Advisory, beside consuming: said at start, not at the first poison event days later.
    threading.Thread(target=dead_letters.check_topic, args=(admin,), name="dlq-check", daemon=True).start()
    # Offsets of a replaced topic must not be resumed from (consumer/lineage.py).
    topic_watch = TopicWatch(admin, settings.topic, stop, settings.topic_check_s)
    topic_watch.start()
    loop = ConsumeLoop(
        consumer=kafka_consumer(settings),
        store=store,
        dead_letters=dead_letters,
        settings=settings,
        metrics=metrics,
        stop=stop,
        topic_watch=topic_watch,
    )
    log.info("consumer starting", extra={"topic": settings.topic, "group": settings.group_id})
    loop.run()
    producer.flush(5)
