"""Projection throughput: ours, the Redis ceiling, the naive tutorial loop and Quix Streams, same events."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from dataclasses import replace

from confluent_kafka import Consumer, Producer, TopicPartition

from adapters.kafka import consumer_config, ensure_topics, producer_config
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis
from bench.common import BIN, ROOT, bench_settings, env_for, rss_kb, wait_for
from consumer.decode import Envelope, decode
from domain import newest_per_user

log = logging.getLogger("bench")
QUIX_VENV = ROOT / ".cache" / "bench-quix"
QUIX_VERSION = "quixstreams[redis]==3.28.1"


def bench_name(i: int) -> str:
    return f"Bench User {i:08d}"


def produce(settings: Settings, count: int) -> None:
    """`count` AddService events, one per user, into a fresh 6-partition topic."""
    ensure_topics(settings, partitions=6)
    producer = Producer(
        producer_config(
            settings, **{"linger.ms": 50, "batch.num.messages": 10000, "queue.buffering.max.messages": 500000}
        )
    )
    base = 1_700_000_000_000
    for i in range(count):
        value = json.dumps({"name": bench_name(i), "phone": 9_000_000_000 + i, "since": base + i}).encode()
        while True:
            try:
                producer.produce(settings.topic, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def committed(settings: Settings, group: str) -> int:
    reader = Consumer(consumer_config(settings, **{"group.id": group}))
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(6)]
        return sum(max(tp.offset, 0) for tp in reader.committed(tps, timeout=10))
    finally:
        reader.close()


def redis_used(settings: Settings) -> int:
    return int(make_redis(settings, timeout_s=10).info("memory")["used_memory"])


def flush(settings: Settings) -> None:
    make_redis(settings, timeout_s=30).flushdb()


def run_ours(settings: Settings, count: int) -> dict[str, float]:
    """The real consumer, from process start until the group committed every event."""
    flush(settings)
    before = redis_used(settings)
    ours = replace(settings, group_id=f"bench-ours-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "ums-find"), "consume"],
        env=env_for(ours, UMS_LOG_LEVEL="WARNING"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The measure: from start until the projection holds every user (one key
    # each, plus the generation pointer); the commit that follows is awaited untimed.
    client = make_redis(settings, timeout_s=10)
    wait_for(lambda: client.dbsize() >= count + 1, 900, "the projection to hold every user", interval=0.05)
    seconds = time.monotonic() - started
    wait_for(lambda: committed(ours, ours.group_id) >= count, 120, "our consumer to commit", interval=0.2)
    rss = rss_kb(proc.pid)
    proc.terminate()
    proc.wait(30)
    used = redis_used(settings) - before
    return {"eps": count / seconds, "seconds": seconds, "rss_kb": rss, "bytes_per_user": used / count}


def decoded_events(settings: Settings, count: int) -> list:  # type: ignore[type-arg]
    """The same events, read back from Kafka and decoded once, outside any timing."""
    consumer = Consumer(consumer_config(settings, **{"group.id": f"bench-read-{uuid.uuid4().hex[:6]}"}))
    consumer.assign([TopicPartition(settings.topic, p, 0) for p in range(6)])
    events = []
    while len(events) < count:
        for msg in consumer.consume(10000, 1.0):
            if not msg.error():
                _, ts = msg.timestamp()
                events.append(decode(Envelope(msg.key(), msg.value(), msg.partition(), msg.offset(), ts)))
    consumer.close()
    return events


def run_ceiling(settings: Settings, events: list, batch: int = 2000) -> dict[str, float]:  # type: ignore[type-arg]
    """redis-py running the same fenced script, pipelined, for the same users; no Kafka."""
    flush(settings)
    store = ProjectionStore(make_redis(settings, timeout_s=30), settings.key_prefix)
    started = time.monotonic()
    for start in range(0, len(events), batch):
        store.apply(list(newest_per_user(events[start : start + batch]).values()), 1)
    seconds = time.monotonic() - started
    return {"eps": len(events) / seconds, "seconds": seconds}


def run_peer(settings: Settings, python: str, script: str, count: int) -> dict[str, float]:
    flush(settings)
    group = f"bench-peer-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    subprocess.run(
        [python, script, settings.kafka_bootstrap, settings.topic, group, settings.redis_url, "peer", str(count)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    return {"eps": count / seconds, "seconds": seconds}


def run_naive(settings: Settings, count: int) -> dict[str, float]:
    return run_peer(settings, sys.executable, str(ROOT / "bench" / "peers" / "naive.py"), count)


def quix_python() -> str:
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        # Its own venv: Quix Streams pins an older confluent-kafka than ours.
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_VERSION], check=True)
    return str(python)


def run_quix(settings: Settings, count: int) -> dict[str, float]:
    return run_peer(settings, quix_python(), str(ROOT / "bench" / "peers" / "quix_peer.py"), count)


def projection_suite(rounds: int, count: int, naive_count: int) -> dict[str, object]:
    settings = bench_settings(topic=f"bench-events-{uuid.uuid4().hex[:6]}", key_prefix="bench")
    log.info("producing %d events", count)
    produce(settings, count)
    events = decoded_events(settings, count)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "ceiling": [], "naive": [], "quix": [], "ours_text": []}
    for r in range(rounds):  # alternate, so drifting machine load hits every contender alike
        log.info("projection round %d of %d", r + 1, rounds)
        runs["ceiling"].append(run_ceiling(settings, events))
        runs["naive"].append(run_naive(settings, naive_count))
        runs["quix"].append(run_quix(settings, count))
        # Today's consumer writing the text value format: the compact one must not write slower (issue 25).
        # The pair runs in alternating order (a fixed order would credit one format with whatever the
        # second run of a pair pays; 2026-12-04: the second was slower in 4 of 6 scratch rounds, by 1-15 %,
        # whichever format it wrote); the last round ends with ours: its projection feeds the API benchmarks.
        pair = [("ours_text", replace(settings, value_format="text")), ("ours", settings)]
        for name, chosen in pair if (rounds - 1 - r) % 2 == 0 else reversed(pair):
            runs[name].append(run_ours(chosen, count))
        log.info("round %d: %s", r + 1, {k: round(v[-1]["eps"]) for k, v in runs.items()})
    return {"settings": settings, "runs": runs, "count": count}
