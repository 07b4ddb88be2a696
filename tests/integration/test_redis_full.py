"""A Redis that reaches its maxmemory (noeviction refuses writes), on the real server.

Production Redis has a maxmemory sized for the data; a rebuild holds two generations and can fill
it. The rebuild then ended in a redis-py traceback (exit 1), and a consumer whose writes were
refused said only "redis write failed, retrying", as for an outage. These tests lower `maxmemory`
on the shared Redis and put back what they found, whatever happens.
"""

from __future__ import annotations

import json

import pytest

from adapters.generations import Generations
from tests.helpers import heartbeat, run_cli, start_consumer, stop_consumer, wait_until

USERS = 20_000


@pytest.fixture
def maxmemory(redis_client):
    """Set `maxmemory` for one test; the server's own comes back afterwards."""
    found = redis_client.config_get("maxmemory")["maxmemory"]

    def limit(value: int) -> None:
        redis_client.config_set("maxmemory", value)

    yield limit
    redis_client.config_set("maxmemory", found)


def produce(producer, topic, names):
    for i, name in enumerate(names):
        producer.produce(topic, value=json.dumps({"name": name, "phone": 9_000_000_000 + i, "since": 1_000}).encode())
        if i % 5_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def used(redis_client) -> int:
    return int(redis_client.info("memory")["used_memory"])


def test_a_full_redis_stops_a_rebuild_cleanly_and_the_consumer_says_why(
    settings, producer, store, redis_client, maxmemory, name_tag, tmp_path
):
    names = [f"{name_tag} full {i}" for i in range(USERS)]
    before = used(redis_client)
    log = tmp_path / "consumer.log"
    consumer = start_consumer(settings, log)
    try:
        produce(producer, settings.topic, names)
        wait_until(lambda: store.get(names[-1].lower(), store.live_generation()), 60, "the live projection")
        wait_until(lambda: all(store.get(n.lower(), store.live_generation()) for n in names[::97]), 30, "every user")
        generation = used(redis_client) - before
        pointer = Generations(store).read()

        for workers in ("1", "2"):  # 2: the worker that meets it exits with its own status, the parent says it
            # Room for half a generation more: the rebuild runs out on its way.
            maxmemory(used(redis_client) + generation // 2)
            result = run_cli(settings, "replay", UMS_REPLAY_WORKERS=workers)
            assert result.returncode == 3, result.stdout + result.stderr
            assert "Redis is full (used " in result.stderr and "raise maxmemory" in result.stderr, result.stderr
            assert "nothing flipped, its generation deleted" in result.stderr and "Traceback" not in result.stderr
            after = Generations(store).read()
            assert after is not None and after.live == pointer.live and after.building is None

        # No room at all: the consumer's writes are refused; it waits, says why once, and goes on after.
        maxmemory(used(redis_client) - 1)
        later = [f"{name_tag} later {i}" for i in range(10)]
        produce(producer, settings.topic, later)
        beat = settings.heartbeat_file
        wait_until(lambda: "Redis is full" in getattr(heartbeat(beat), "waiting", ""), 30, "the consumer to wait")
        maxmemory(0)
        wait_until(lambda: all(store.get(n.lower(), store.live_generation()) for n in later), 30, "the later users")
    finally:
        stop_consumer(consumer, log)
    text = log.read_text(errors="replace")
    errors = [line for line in text.splitlines() if "ERROR" in line and "Redis is full" in line]
    assert len(errors) == 1, text[-3000:]
    assert "of maxmemory" in errors[0] and "ums-find gc" in errors[0], errors[0]
