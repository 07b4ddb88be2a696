"""Where a request's CPU goes in our API, in-process: CPU microseconds per `GET /user/<name>` for
the fixed-body ceiling, for ours with the Redis read replaced by its answer, for ours, and for the
Redis read alone (`ProjectionStore.get`). Differences between them are the costs of each layer.

Flask's test client drives the apps (no gunicorn, no HTTP parsing: those cost both sides alike),
so the figures are per request of the app itself. Needs the local stack's environment.

python -m bench.request_costs [REQUESTS]   -> bench/results/request-costs.json
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from unittest import mock

import api
from adapters.store import ProjectionStore, make_redis
from bench.common import BIN, RESULTS, ROOT, bench_settings, env_for, median
from bench.freshness import wait_drained
from bench.peers import ceiling_app
from bench.projection import bench_name, produce
from domain.collation import name_key

USERS = 2000
ROUNDS = 5


def project(count: int) -> Any:
    """`count` users through Kafka and the real consumer into a fresh prefix; the settings used."""
    settings = bench_settings(
        topic=f"bench-costs-{uuid.uuid4().hex[:6]}",
        key_prefix=f"costs{uuid.uuid4().hex[:4]}",
        group_id=f"bench-costs-{uuid.uuid4().hex[:6]}",
    )
    produce(settings, count)
    env = env_for(settings, UMS_LOG_LEVEL="WARNING")
    consumer = subprocess.Popen([str(BIN / "ums-find"), "consume"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_drained(settings)
    finally:
        consumer.terminate()
        consumer.wait(30)
    return settings


def cpu_us(call: Callable[[], object], times: int) -> float:
    started = time.process_time()
    for _ in range(times):
        call()
    return (time.process_time() - started) / times * 1e6


def main(requests: int = 5000) -> None:
    settings = project(USERS)
    pick = random.Random(3)
    paths = ["/user/" + bench_name(pick.randrange(USERS)).replace(" ", "%20") for _ in range(requests)]
    ours = api.create_app(replace(settings)).test_client()
    ceiling = ceiling_app.create_app().test_client()
    assert ours.get(paths[0]).status_code == 200, "the projection does not answer"
    store = ProjectionStore(make_redis(settings), settings.key_prefix)
    generation = store.live_generation()
    assert generation is not None
    one = store.get(name_key(bench_name(1)), generation)

    def each(client: Any) -> Callable[[], None]:
        def run() -> None:
            for path in paths:
                client.get(path)

        return run

    key = name_key(bench_name(7))
    rounds: dict[str, list[float]] = {"ceiling": [], "ours_without_redis": [], "ours": [], "redis_get_alone": []}
    for _ in range(ROUNDS):  # interleaved, so drift hits every series alike
        rounds["ceiling"].append(cpu_us(each(ceiling), 1) / requests)
        with mock.patch.object(ProjectionStore, "get", lambda *_: one):
            rounds["ours_without_redis"].append(cpu_us(each(ours), 1) / requests)
        rounds["ours"].append(cpu_us(each(ours), 1) / requests)
        rounds["redis_get_alone"].append(cpu_us(lambda: store.get(key, generation), requests))
    result = {name: {"median_us": median(v), "min_us": min(v), "max_us": max(v)} for name, v in rounds.items()}
    client = store.client
    client.delete(*client.keys(f"{settings.key_prefix}:*"), *client.keys(f"{{{settings.key_prefix}}}*"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {"requests": requests, "rounds": ROUNDS, **result}
    (RESULTS / "request-costs.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
