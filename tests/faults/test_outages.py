"""Redis and Kafka go away mid-stream; the consumer waits, resumes by itself, and loses nothing."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace

from tests.faults.rig import ROOT, compare, produce_in_background, random_events, snapshot, wait_converged
from tests.helpers import wait_until
from ums_find.store import ProjectionStore, make_redis


def test_redis_down_for_20_seconds(settings, fault_producer, model, consumers, rng, name_tag, private_redis):
    settings = replace(settings, redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    store = ProjectionStore(make_redis(settings, timeout_s=2.0), settings.key_prefix)
    events = 20_000
    values = random_events(rng, users=2000, count=events, tag=name_tag)
    consumer = consumers(UMS_REDIS_URL=settings.redis_url).start()
    pid = consumer.pid
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 15)
    wait_until(lambda: model.produced > events // 4, 30, "a quarter of the stream")
    private_redis.stop()
    down_since = time.monotonic()
    wait_until(lambda: "redis write failed" in consumer.text(), 30, "the consumer to notice the outage")
    # The outage itself lasts about 20 s (the scenario); the consumer must ride it out.
    wait_until(lambda: time.monotonic() - down_since >= 20 or not consumer.alive(), 30, "20 s of outage")
    assert consumer.alive(), "the consumer died during the Redis outage"
    private_redis.start()
    producer.join()
    wait_converged(settings)
    diff = compare(model.view(), snapshot(store, 1))
    retries = consumer.text().count("redis write failed")
    print(
        f"redis outage: events={model.produced} retries_logged={retries} "
        f"missing={diff.missing} stale={diff.stale} extra={diff.extra}"
    )
    assert consumer.pid == pid and consumer.alive(), "the consumer restarted"
    assert diff.ok, diff


def test_kafka_broker_restart(settings, store, fault_producer, model, consumers, rng, name_tag):
    events = 20_000
    values = random_events(rng, users=2000, count=events, tag=name_tag)
    consumer = consumers().start()
    pid = consumer.pid
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 10)
    wait_until(lambda: model.produced > events // 4, 30, "a quarter of the stream")
    stack = str(ROOT / "services" / "stack.sh")
    subprocess.run([stack, "stop", "kafka"], check=True)
    subprocess.run([stack, "up"], check=True)
    producer.join()
    assert model.failed == 0
    wait_converged(settings, timeout=120)
    diff = compare(model.view(), snapshot(store, 1))
    print(f"broker restart: events={model.produced} missing={diff.missing} stale={diff.stale} extra={diff.extra}")
    assert consumer.pid == pid and consumer.alive(), "the consumer restarted"
    assert diff.ok, diff
