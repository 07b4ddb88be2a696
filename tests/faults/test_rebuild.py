"""Rebuilds: a blue/green replay under reads and writes, and a wiped Redis that heals by itself."""

from __future__ import annotations

import random
import threading
from dataclasses import replace

import requests

from adapters.clients import Role, projection_store
from tests.faults.rig import (
    compare,
    fixed_pace,
    produce,
    produce_in_background,
    random_events,
    replayed_events,
    snapshot,
    wait_converged,
)
from tests.helpers import run_cli, wait_until

# What a rebuild builds, not how fast: a fixed pace (rig.fixed_pace) makes the replay of the ~100k
# events backlogged at its claim take ~5 s, overlapping the 5 s of writes.
PACE = 20_000


def test_rebuild_100k_under_reads_and_writes(
    settings, store, fault_producer, model, consumers, rng, name_tag, start_api
):
    users = 100_000
    names = [f"{name_tag} u{i:06d}" for i in range(users)]
    produce(fault_producer, settings.topic, random_events(rng, users=users, count=users, tag=name_tag), model)
    consumer = consumers().start()
    wait_converged(settings, timeout=180)
    view = model.view()
    existing = [n for n in names if n.lower() in view]
    api = start_api()

    failures: list[tuple[str, int]] = []
    reads = 0
    reading = threading.Event()
    reading.set()

    def reader() -> None:
        nonlocal reads
        session = requests.Session()
        pick = random.Random(1)
        while reading.is_set():
            name = pick.choice(existing)
            status = session.get(f"{api.base}/user/{name}", timeout=5).status_code
            reads += 1
            if status != 200:
                failures.append((name, status))

    thread = threading.Thread(target=reader)
    thread.start()
    # Events that arrive while the rebuild runs: new users and newer versions of old ones.
    during = produce_in_background(
        fault_producer,
        settings.topic,
        random_events(rng, users=users + 5000, count=20_000, tag=name_tag),
        model,
        per_second=4000,
    )
    result = run_cli(settings, "replay", timeout=300, **fixed_pace(PACE))
    during.join()
    wait_converged(settings)
    reading.clear()
    thread.join()
    print(result.stdout, result.stderr[-2000:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert replayed_events(result.stdout) < users + 20_000  # writes came after the claim: the two overlapped

    assert store.live_generation() == 2
    diff = compare(model.view(), snapshot(store, 2))
    left_in_old = sum(1 for _ in store.client.scan_iter(match=store.key(1, "*"), count=5000))
    print(
        f"rebuild: users={diff.checked} reads={reads} failed_reads={len(failures)} "
        f"missing={diff.missing} stale={diff.stale} extra={diff.extra} old_keys_left={left_in_old}"
    )
    assert reads > 100
    assert failures == []
    assert diff.ok, diff
    assert left_in_old == 0
    assert consumer.alive()


def test_flushed_redis_comes_back_by_itself(settings, fault_producer, model, consumers, rng, name_tag, private_redis):
    settings = replace(settings, redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    store = projection_store(settings, Role.ADMIN)
    consumer = consumers(UMS_REDIS_URL=settings.redis_url).start()
    produce(fault_producer, settings.topic, random_events(rng, users=3000, count=15_000, tag=name_tag), model)
    wait_converged(settings)
    assert compare(model.view(), snapshot(store, 1)).ok
    store.client.flushall()
    # More events after the wipe, then no more: the idle consumer must notice by itself.
    produce(fault_producer, settings.topic, random_events(rng, users=3500, count=3000, tag=name_tag), model)

    def healed():
        generation = store.live_generation()
        return generation is not None and compare(model.view(), snapshot(store, generation)).ok

    wait_until(healed, 60, "the projection to equal the model again", interval=0.5)
    assert "resume from generation" in consumer.text()  # the consumer repositioned by itself
    assert consumer.alive()
