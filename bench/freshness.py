"""Freshness: from the producer's delivery report of a new user's event to the first `GET /user/<name>`
that returns it, through the real consumer and the real API.

Measured at 20 events/s alone ("low") and with 50,000 events/s of other users in the background
("loaded"), for the consumer as it fetches now ("after") and as it fetched before issue 15
("before": bench/peers/batch_wait_consumer.py, which waits for a full batch or 50 ms).
Probes arrive as a Poisson process (20/s on average), not evenly spaced. Each probe is polled by
its own thread over a kept-alive connection, back to back, so the resolution is one GET (about
a millisecond); a probe not seen within 10 s counts as 10 s.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import subprocess
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from confluent_kafka import Consumer, Producer, TopicPartition

from adapters.generations import Generations
from adapters.kafka import consumer_config, ensure_topics, producer_config
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis
from bench.common import (
    BIN,
    LOAD_CPUS,
    PORT_BASE,
    QUICK,
    ROOT,
    bench_settings,
    env_for,
    percentile,
    pinned,
    spread,
    wait_for,
)
from bench.servers import gunicorn

log = logging.getLogger("bench")
PROBE_RATE = 20
BACKGROUND_RATE = 50_000
PROBES = 60 if QUICK else 150
GIVE_UP_S = 10.0
PARTITIONS = 6
VARIANTS = {
    "before": [sys.executable, "-m", "bench.peers.batch_wait_consumer"],
    "after": [str(BIN / "ums-find"), "consume"],
}


def wait_visible(port: int, name: str, phone: int, deadline_s: float) -> float | None:
    """Poll until the API returns this phone for `name`; the time it did (perf_counter) or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    path = "/user/" + name.replace(" ", "%20")
    end = time.perf_counter() + deadline_s
    try:
        while time.perf_counter() < end:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and json.loads(body).get("phone") == phone:
                return time.perf_counter()
        return None
    finally:
        conn.close()


def ready(settings: Settings, port: int, tag: str, timeout_s: float = 90.0) -> None:
    """Until a user on every partition is visible: the consumer owns them all (a group join waits
    Kafka's rebalance delay, and a partition can still be moving from the previous consumer)."""
    producer = Producer(producer_config(settings))
    for p in range(PARTITIONS):
        value = {"name": f"Fresh {tag} ready {p}", "phone": 9_100_000_000 + p, "since": int(time.time() * 1000)}
        producer.produce(settings.topic, value=json.dumps(value).encode(), partition=p)
    assert producer.flush(30) == 0, "readiness events not delivered"
    for p in range(PARTITIONS):
        seen = wait_visible(port, f"Fresh {tag} ready {p}", 9_100_000_000 + p, timeout_s)
        assert seen is not None, f"partition {p} was not consumed within {timeout_s} s"


def probe(settings: Settings, port: int, tag: str, count: int, give_up_s: float = GIVE_UP_S) -> list[float]:
    """`count` new users at PROBE_RATE; each one's delivery-to-visible time in ms."""
    producer = Producer(producer_config(settings, **{"linger.ms": 0}))
    pool = ThreadPoolExecutor(max_workers=32)
    futures: dict[int, Future[float | None]] = {}
    delivered: dict[int, float] = {}

    def on_delivery(i: int, name: str, phone: int) -> None:
        def report(err: object, _msg: object) -> None:
            # Delivery reports run inside producer.poll()/flush(), on this thread.
            if err is None:
                delivered[i] = time.perf_counter()
                futures[i] = pool.submit(wait_visible, port, name, phone, give_up_s)

        producer.produce(
            settings.topic,
            value=json.dumps({"name": name, "phone": phone, "since": int(time.time() * 1000)}).encode(),
            on_delivery=report,
        )

    # Poisson arrivals: evenly spaced probes would phase-lock with the consumer's 50 ms wait
    # (one run then sees only ~0 ms or only ~50 ms waits, depending on the phase it started in).
    pace = random.Random(tag)
    due = time.perf_counter()
    for i in range(count):
        due += pace.expovariate(PROBE_RATE)
        while time.perf_counter() < due:
            producer.poll(0.0005)
        on_delivery(i, f"Fresh {tag} {i:05d}", 9_100_000_000 + i)
    assert producer.flush(30) == 0, "probe events not delivered"
    seen = {i: f.result() for i, f in futures.items()}
    pool.shutdown()
    return [((at if at is not None else delivered[i] + give_up_s) - delivered[i]) * 1000 for i, at in seen.items()]


def background(settings: Settings) -> subprocess.Popen[bytes]:
    """Other users' events at BACKGROUND_RATE, from a process on the load generator's core."""
    return subprocess.Popen(
        pinned([sys.executable, "-m", "bench.background", settings.topic, str(BACKGROUND_RATE)], LOAD_CPUS),
        env=env_for(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )


def end_offsets(settings: Settings) -> dict[int, int]:
    reader = Consumer(consumer_config(settings, **{"group.id": f"bench-watermarks-{uuid.uuid4().hex[:6]}"}))
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(PARTITIONS)]
        return {tp.partition: reader.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    finally:
        reader.close()


def wait_drained(settings: Settings, timeout_s: float = 600) -> None:
    """Until the projection's positions (in Redis) reach the end of every partition: no backlog left."""
    generations = Generations(ProjectionStore(make_redis(settings, timeout_s=10), settings.key_prefix))
    ends = end_offsets(settings)

    def drained() -> bool:
        live = generations.read()
        positions = generations.all_positions(live.live) if live else {}
        return all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0)

    wait_for(drained, timeout_s, "the consumer to drain its backlog", interval=0.2)


def run_variant(settings: Settings, port: int, variant: str, tag: str) -> dict[str, list[float]]:
    consumer = subprocess.Popen(
        VARIANTS[variant],  # unpinned, like Kafka and Redis: it needs more than the API core at 50k ev/s
        env=env_for(settings, UMS_LOG_LEVEL="WARNING"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready(settings, port, tag)
        low = probe(settings, port, f"{tag}l", PROBES)
        load = background(settings)
        try:
            time.sleep(2.0)  # the background load reaches its rate before probes are timed
            loaded = probe(settings, port, f"{tag}h", PROBES)
        finally:
            load.terminate()
            out, _ = load.communicate(timeout=60)
        sent = json.loads(out)
        background_eps = sent["sent"] / sent["seconds"]
        wait_drained(settings)  # no backlog left for the next variant
    finally:
        consumer.terminate()
        consumer.wait(60)
    return {"low": low, "loaded": loaded, "background_eps": [background_eps]}


def freshness_suite(rounds: int) -> dict[str, object]:
    settings = bench_settings(
        topic=f"bench-fresh-{uuid.uuid4().hex[:6]}", key_prefix="fresh", group_id=f"bench-fresh-{uuid.uuid4().hex[:6]}"
    )
    ensure_topics(settings, partitions=PARTITIONS)
    port = PORT_BASE + 4
    api = gunicorn(replace(settings), port)
    samples: dict[str, dict[str, list[list[float]]]] = {
        v: {"low": [], "loaded": [], "background_eps": []} for v in VARIANTS
    }
    try:
        for r in range(rounds):
            for variant in VARIANTS:
                got = run_variant(settings, port, variant, f"{r}{variant[0]}")
                for condition, values in got.items():
                    samples[variant][condition].append(values)
                log.info(
                    "freshness round %d %s: p99 low %.1f ms, loaded %.1f ms",
                    r + 1,
                    variant,
                    percentile(sorted(got["low"]), 99),
                    percentile(sorted(got["loaded"]), 99),
                )
    finally:
        api.stop()
    return summarise(samples)


def summarise(samples: dict[str, dict[str, list[list[float]]]]) -> dict[str, object]:
    """Per variant and condition: p50/p99 per round (median, spread), max overall, every sample pooled."""
    out: dict[str, object] = {}
    for variant, conditions in samples.items():
        out[f"{variant}_background_eps"] = spread([r[0] for r in conditions.pop("background_eps")])
        for condition, rounds in conditions.items():
            per_round = [sorted(r) for r in rounds]
            pooled = sorted(v for r in rounds for v in r)
            out[f"{variant}_{condition}"] = {
                "p50_ms": spread([percentile(r, 50) for r in per_round]),
                "p99_ms": spread([percentile(r, 99) for r in per_round]),
                "max_ms": pooled[-1] if pooled else float("nan"),
                "pooled_p50_ms": percentile(pooled, 50),
                "pooled_p99_ms": percentile(pooled, 99),
                "samples": [round(v, 3) for v in pooled],
            }
    return out
