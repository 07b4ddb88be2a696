"""The compose stack, run for real (issue 14, part 2): docker-compose.yml with its health checks
and depends_on conditions as written, the stand-in images through docker-compose.local.yml.

A crash is a SIGKILL of the container's main process from the host: `docker kill` is a manual
stop for Docker, which then leaves the container down whatever its restart policy says.
"""

from __future__ import annotations

import json

import pytest
import requests

from adapters import clients
from adapters.settings import Settings
from tests.deploy.compose.composerun import crash, healthy_again, services
from tests.deploy.running import Stream, record, store_for
from tests.helpers import unique, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1800)]

API = "http://127.0.0.1:8080"
LONG_RUNNING = {"zookeeper", "kafka", "mysql", "redis", "consumer", "api", "prometheus"}
ONE_SHOTS = {"topics", "seed"}


def test_every_service_healthy_and_one_shots_done(compose_stack: Settings) -> None:
    rows = services()
    assert {name: rows[name]["Health"] for name in LONG_RUNNING} == dict.fromkeys(LONG_RUNNING, "healthy")
    assert {name: (rows[name]["State"], rows[name]["ExitCode"]) for name in ONE_SHOTS} == dict.fromkeys(
        ONE_SHOTS, ("exited", 0)
    )


def test_published_ports_are_on_loopback_only(compose_stack: Settings) -> None:
    published = {
        (p["URL"], p["PublishedPort"]) for row in services().values() for p in row["Publishers"] if p["PublishedPort"]
    }
    assert published == {("127.0.0.1", 8080), ("127.0.0.1", 29092)}


def test_seeded_demo_user_answers_from_the_projection(compose_stack: Settings) -> None:
    response = requests.get(f"{API}/user/KrishnaMohan", timeout=5)
    assert response.status_code == 200
    assert response.headers["X-Ums-Source"] == "projection"


def test_event_produced_through_kafka_is_readable_on_8080(compose_stack: Settings) -> None:
    name, phone = unique("Compose").replace("-", ""), 9_876_543_210
    producer = clients.kafka_producer(compose_stack)
    event = {"name": name, "phone": phone, "since": 1_750_000_000_000}
    producer.produce(compose_stack.topic, json.dumps(event).encode())
    assert producer.flush(30) == 0

    def answered() -> requests.Response | None:
        response = requests.get(f"{API}/user/{name}", timeout=5)
        return response if response.status_code == 200 else None

    response = wait_until(answered, 60, f"{name} through the API", interval=0.2)
    assert (response.json()["phone"], response.headers["X-Ums-Source"]) == (phone, "projection")


def test_consumer_killed_mid_stream_comes_back_with_nothing_lost(compose_stack: Settings) -> None:
    stream = Stream(compose_stack, unique("ck")).start()
    stream.wait_produced(0.3)
    restarts = crash("consumer")
    assert stream.model.produced < len(stream.values), "the kill came after the stream ended"
    healthy_again("consumer", restarts)
    stream.join()
    diff = stream.wait_whole(store_for(compose_stack))
    record(compose_consumer_kill={"events": len(stream.values), "missing": diff.missing, "stale": diff.stale})
    assert (diff.missing, diff.stale, diff.extra) == (0, 0, 0), diff


def test_api_killed_is_restarted_by_compose(compose_stack: Settings) -> None:
    restarts = crash("api")
    healthy_again("api", restarts)
    assert requests.get(f"{API}/user/KrishnaMohan", timeout=5).status_code == 200
