"""Fixtures for tests on the real stack (services/stack.sh): settings -> clients -> processes.

A test that needs a server and cannot reach it fails, naming the server; it never skips.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from consumer.kafka import ensure_topics, make_producer
from tests.helpers import unique
from ums_find.mysql import MySQLUsers, make_pool
from ums_find.settings import Settings
from ums_find.store import ProjectionStore, make_redis


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Settings of the running stack; fails (never skips) when a server is missing."""
    if "UMS_MYSQL_PASSWORD" not in os.environ:
        pytest.fail("the stack's environment is missing: run the suite with `make test`")
    settings = Settings.from_env()
    redis_url = urlparse(settings.redis_url)
    kafka_host, kafka_port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    servers = {
        "Redis": (redis_url.hostname or "127.0.0.1", redis_url.port or 6379),
        "MariaDB": (settings.mysql_host, settings.mysql_port),
        "Kafka": (kafka_host, int(kafka_port)),
    }
    missing = [f"{name} at {host}:{port}" for name, (host, port) in servers.items() if not _reachable(host, port)]
    if missing:
        pytest.fail("servers not reachable: " + ", ".join(missing) + " (start them with services/stack.sh up)")
    return settings


@pytest.fixture
def settings(stack_settings: Settings, tmp_path) -> Settings:
    """A private topic, DLQ, group and key prefix per test, on the shared servers."""
    topic = unique("ums-test")
    settings = Settings.from_env(
        topic=topic,
        group_id=unique("ums-group"),
        key_prefix=unique("t"),
        heartbeat_file=str(tmp_path / "heartbeat"),
        metrics_port=0,
        generation_cache_s=0.0,
    )
    ensure_topics(settings, partitions=6)
    return settings


@pytest.fixture
def redis_client(settings: Settings):
    client = make_redis(settings, timeout_s=2.0)
    yield client
    for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def store(redis_client, settings: Settings) -> ProjectionStore:
    return ProjectionStore(redis_client, settings.key_prefix)


@pytest.fixture
def mysql_writer(settings: Settings) -> Iterator[MySQLUsers]:
    pool = make_pool(settings, writer=True)
    yield MySQLUsers(pool)
    pool.close()


@pytest.fixture
def producer(settings: Settings):
    producer = make_producer(settings)
    yield producer
    producer.flush(10)


@pytest.fixture
def name_tag(mysql_writer: MySQLUsers) -> Iterator[str]:
    """A short unique prefix for user names; this test's MySQL rows are deleted afterwards."""
    tag = unique("u")[2:8]
    yield tag
    with mysql_writer.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM ums_users WHERE name LIKE %s", (tag + "%",))


@pytest.fixture
def run_consumer(settings: Settings):
    """Start consumer.main.main in a thread; every started consumer is stopped at teardown."""
    import threading

    from consumer.main import main

    started: list[tuple[threading.Thread, threading.Event]] = []

    def start(custom: Settings | None = None) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=main, args=(custom or settings, stop), daemon=True)
        thread.start()
        started.append((thread, stop))
        return stop

    yield start
    for _, stop in started:
        stop.set()
    for thread, _ in started:
        thread.join(timeout=20)
        assert not thread.is_alive(), "consumer did not stop within 20 s"
