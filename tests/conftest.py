"""Fixtures for tests on the real stack (services/stack.sh): settings -> clients -> processes.

A test that needs a server and cannot reach it fails, naming the server; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from confluent_kafka.admin import AdminClient

from adapters import clients
from adapters.clients import Role, kafka_producer, mysql_users
from adapters.kafka import ensure_topics, security_config
from adapters.mysql import MySQLUsers
from adapters.settings import Settings
from adapters.store import ProjectionStore
from devtools.addservice import AddService
from tests.helpers import delete_matching, env_of, free_port, start_consumer, unique, wait_until


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


CLUSTER_URL = "redis+cluster://127.0.0.1:7000"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """A 3-master Redis Cluster, started on demand by services/stack.sh (and stopped if started here)."""
    stack = str(Path(__file__).resolve().parents[1] / "services" / "stack.sh")
    running = subprocess.run(["redis-cli", "-p", "7000", "cluster", "info"], capture_output=True, text=True)
    subprocess.run([stack, "cluster-up"], check=True)
    yield CLUSTER_URL
    if "cluster_state:ok" not in running.stdout:
        subprocess.run([stack, "cluster-down"], check=True)


@pytest.fixture
def redis_kind(request) -> str:
    """ "single" unless a module parametrizes it: `pytestmark = CLUSTER_TOO`."""
    return getattr(request, "param", "single")


# Runs a module's tests against a single Redis and against Redis Cluster.
CLUSTER_TOO = pytest.mark.parametrize("redis_kind", ["single", "cluster"], indirect=True)


@pytest.fixture
def settings(stack_settings: Settings, tmp_path, redis_kind: str, request) -> Iterator[Settings]:
    """A private topic, DLQ, group and key prefix per test, on the shared servers."""
    topic = unique("ums-test")
    cluster = {"redis_url": request.getfixturevalue("redis_cluster")} if redis_kind == "cluster" else {}
    settings = Settings.from_env(
        **cluster,
        topic=topic,
        group_id=unique("ums-group"),
        key_prefix=unique("t"),
        heartbeat_file=str(tmp_path / "heartbeat"),
        metrics_port=0,
        generation_cache_s=0.0,
    )
    ensure_topics(settings, partitions=6)
    yield settings
    _delete_topics(settings)


def _delete_topics(settings: Settings) -> None:
    """This test's topics go with it: a broker that keeps every earlier test's partitions restarts
    slower and slower through the suite (the broker-restart tests wait for it). Best effort: a test
    may have stopped the broker it used."""
    admin = AdminClient({**security_config(settings), "socket.timeout.ms": 5000})  # type: ignore[dict-item]
    futures = admin.delete_topics([settings.topic, settings.dead_letter_topic], request_timeout=5)
    for future in futures.values():
        with contextlib.suppress(Exception):  # gone already, or the broker is: nothing to clean up then
            future.result(timeout=10)


@pytest.fixture
def redis_client(settings: Settings):
    client = clients.redis_client(settings, Role.ADMIN)
    yield client
    delete_matching(client, f"{settings.key_prefix}:*", f"{{{settings.key_prefix}}}:*")  # users, control keys
    client.close()


@pytest.fixture
def store(redis_client, settings: Settings) -> ProjectionStore:
    return ProjectionStore(redis_client, settings.key_prefix)


@pytest.fixture
def mysql_writer(settings: Settings) -> Iterator[MySQLUsers]:
    """The AddService's side, with 2 s MySQL timeouts: the API's 0.3 s is not a writer's budget, and
    on a busy machine an fsync'd upsert took longer now and then (a walking-skeleton test failed so)."""
    users = mysql_users(replace(settings, mysql_read_timeout_s=2.0, mysql_connect_timeout_s=2.0), writer=True)
    yield users
    users.pool.close()


@pytest.fixture
def addservice(settings: Settings, mysql_writer: MySQLUsers) -> Iterator[AddService]:
    """The AddService stand-in: saves to MySQL through `mysql_writer`, then publishes the event."""
    producer = kafka_producer(settings)
    yield AddService(mysql_writer, producer, settings.topic)
    producer.flush(10)


@pytest.fixture
def producer(settings: Settings):
    producer = kafka_producer(settings)
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


# ---- processes: gunicorn serving the API and `ums-find consume`, each with its own log

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    ops: str = ""  # the operational port's base URL: /metrics, /livez, /readyz

    def get(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        return requests.get(self.base + path, timeout=10, **kwargs)

    def ops_get(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        return requests.get(self.ops + path, timeout=10, **kwargs)


def _stop(proc: subprocess.Popen[bytes], log: Path, name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    assert code == 0, f"{name} exited with {code}:\n" + log.read_text(errors="replace")[-3000:]


@pytest.fixture
def start_api(settings, tmp_path):
    """Factory: start gunicorn with the app for `settings` (plus env overrides); stopped at teardown."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(custom: Settings | None = None, **env: str) -> Server:
        port, ops_port = free_port(), free_port()
        log = tmp_path / f"api{len(started)}.log"
        environment = env_of(
            custom or settings,
            **{
                "UMS_API_BIND": f"127.0.0.1:{port}",
                "UMS_API_OPS_BIND": f"127.0.0.1:{ops_port}",
                "UMS_API_WORKERS": "2",
                "UMS_LOG_JSON": "false",
                **env,
            },
        )
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"],
                env=environment,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, log))
        server = Server(f"http://127.0.0.1:{port}", proc, log, f"http://127.0.0.1:{ops_port}")

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return server.ops_get("/livez").status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, 30, "the API to answer")
        return server

    yield start
    for proc, log in started:
        _stop(proc, log, "gunicorn")


@pytest.fixture
def api(start_api) -> Server:
    return start_api()


@pytest.fixture
def consumer_process(settings, tmp_path):
    log = tmp_path / "consumer.log"
    proc = start_consumer(settings, log)
    yield proc
    _stop(proc, log, "consumer")


# ---- the secure stack: TLS and authentication on every link (services/secure.sh)

SECRET_SETTINGS = (
    "kafka_sasl_password",
    "redis_api_password",
    "redis_consumer_password",
    "redis_admin_password",
    "mysql_password",
    "addservice_mysql_password",
)


@dataclass(frozen=True)
class SecureStack:
    env: dict[str, str]  # the clients' environment (UMS_*), and SECURE_OTHER_CA_FILE

    def settings(self, **overrides: object) -> Settings:
        """Settings for the secure servers; its own topic and group, the prefix the Redis ACLs allow."""
        return Settings.from_env(self.env, **{"topic": unique("ums-sec"), "group_id": unique("ums-sec"), **overrides})

    @property
    def other_ca(self) -> str:
        return self.env["SECURE_OTHER_CA_FILE"]

    def secrets(self) -> list[str]:
        base = Settings.from_env(self.env)
        return [getattr(base, name) for name in SECRET_SETTINGS]

    def assert_no_secret_in(self, text: str, where: str) -> None:
        leaked = [name for name, value in zip(SECRET_SETTINGS, self.secrets(), strict=True) if value in text]
        assert not leaked, f"{where} shows the value of {leaked}"


@pytest.fixture(scope="session")
def secure_stack(stack_settings: Settings) -> Iterator[SecureStack]:
    """The secure servers beside the plaintext ones, started once (and stopped if started here)."""
    stack = ROOT / "services" / "stack.sh"
    directory = Path(os.environ.get("UMS_STACK_DIR", ROOT / ".run" / "stack")) / "secure"
    running = [p for p in ("redis/redis.pid", "mariadb/mysqld.pid", "kafka/kafka.pid") if (directory / p).exists()]
    result = subprocess.run([str(stack), "secure-up"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and len(running) < 3:  # what did start must not outlive the session
        subprocess.run([str(stack), "secure-down"], capture_output=True, timeout=120)
    assert result.returncode == 0, "services/stack.sh secure-up failed:\n" + result.stderr[-3000:]
    env = dict(
        line.split("=", 1) for line in (directory / "env").read_text().splitlines() if "=" in line and line[0] != "#"
    )
    yield SecureStack(env)
    if len(running) < 3:
        subprocess.run([str(stack), "secure-down"], check=True, capture_output=True, timeout=120)
