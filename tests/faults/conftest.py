"""Fixtures of the fault tests: faster session timeouts, a model, a producer, consumer processes."""

from __future__ import annotations

import random

import pytest

from adapters.clients import kafka_producer
from tests.faults.rig import ConsumerProcess, Model, PrivateRedis


@pytest.fixture
def settings(settings):
    # A crashed member's partitions move after 6 s instead of 10 s: shorter tests, same logic.
    return type(settings)(**{**settings.__dict__, "session_timeout_ms": 6000})


@pytest.fixture
def rng(request):
    seed = random.randrange(2**32)
    print(f"fault test seed: {seed}")
    return random.Random(seed)


@pytest.fixture
def model():
    return Model()


@pytest.fixture
def fault_producer(settings):
    producer = kafka_producer(settings, **{"linger.ms": 20, "batch.num.messages": 5000})
    yield producer
    producer.flush(30)


@pytest.fixture
def consumers(settings, tmp_path):
    """Factory of consumer processes; all are killed at teardown."""
    made: list[ConsumerProcess] = []

    def make(name: str = "c", **env: str) -> ConsumerProcess:
        proc = ConsumerProcess(settings, tmp_path, f"{name}{len(made)}", **env)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.alive():
            proc.kill()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.stop()


@pytest.fixture
def flip_cutter(settings):
    """Builds an in-process Rebuild whose Redis link is cut when its flip script goes by."""
    import hashlib
    from urllib.parse import urlparse

    import redis

    from adapters.lua import FLIP
    from adapters.store import ProjectionStore
    from consumer.replay import Rebuild
    from tests.faults.proxy import CuttingProxy

    proxy = CuttingProxy(urlparse(settings.redis_url).port or 6379)

    class Cutter:
        def __call__(self, custom, when: str) -> Rebuild:
            # Cached in Redis as a long-running server has it, so the first EVALSHA runs it.
            redis.Redis(port=proxy.upstream_port).script_load(FLIP)
            proxy.arm(hashlib.sha1(FLIP.encode()).hexdigest().encode(), when)
            client = redis.Redis(port=proxy.port, socket_timeout=2, socket_connect_timeout=2)
            return Rebuild(custom, ProjectionStore(client, custom.key_prefix), None)

        def heal(self) -> None:
            proxy.heal()

    yield Cutter()
    proxy.close()
