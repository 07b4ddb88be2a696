"""Scale out: three consumers losing one, and a 3-broker Kafka (RF 3, min ISR 2) losing one broker."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.clients import kafka_producer
from adapters.kafka import ensure_topics
from tests.faults.rig import ROOT, compare, produce_in_background, random_events, snapshot, wait_converged
from tests.helpers import wait_until

STACK = str(ROOT / "services" / "stack.sh")
KAFKA3 = "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


@pytest.fixture(scope="module")
def kafka3():
    """The 3-broker rig, started on demand (and stopped after this module if started here)."""
    stack_dir = Path(os.environ["UMS_STACK_DIR"]) / "kafka3"
    pids = [stack_dir / f"node{n}" / "kafka.pid" for n in (1, 2, 3)]
    running = all(p.exists() and Path(f"/proc/{p.read_text().strip()}").exists() for p in pids)
    env = {**os.environ, "KAFKA_HEAP": "384m"}
    subprocess.run([STACK, "kafka3-up"], check=True, env=env)
    yield pids
    if not running:
        # Three brokers take ~10 s to stop: beside the tests that follow, not before them (nothing
        # else uses these ports); the test process waits for it before it exits.
        stopping = subprocess.Popen([STACK, "kafka3-down"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(lambda: stopping.wait() == 0 or sys.stderr.write("kafka3-down failed\n"))


def test_three_consumers_one_killed(settings, store, fault_producer, model, consumers, rng, name_tag):
    events = 30_000
    values = random_events(rng, users=3000, count=events, tag=name_tag)
    group = [consumers(name).start() for name in "abc"]
    for consumer in group:
        consumer.wait_running()
    wait_until(lambda: all(c.assigned() for c in group), 30, "all three to own partitions")
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 10)
    wait_until(lambda: model.produced > events // 3, 30, "a third of the stream")
    group[0].kill()
    # The survivors own all six partitions once the dead member's session expired.
    wait_until(lambda: group[1].assigned() + group[2].assigned() == 6, 40, "the others to take over", interval=0.2)
    producer.join()
    wait_converged(settings)
    diff = compare(model.view(), snapshot(store, 1))
    print(
        f"3 consumers, 1 killed: events={model.produced} missing={diff.missing} stale={diff.stale} extra={diff.extra}"
    )
    assert diff.ok, diff
    assert group[1].alive() and group[2].alive()


def test_one_broker_of_three_killed_and_restarted(settings, store, model, consumers, rng, name_tag, kafka3):
    settings = replace(settings, kafka_bootstrap=KAFKA3)
    ensure_topics(settings, partitions=6)
    producer = kafka_producer(settings, **{"linger.ms": 20})
    events = 20_000
    values = random_events(rng, users=2000, count=events, tag=name_tag)
    consumer = consumers(UMS_KAFKA_BOOTSTRAP=KAFKA3).start()
    consumer.wait_running()
    stream = produce_in_background(producer, settings.topic, values, model, per_second=events / 12)
    wait_until(lambda: model.produced > events // 4, 60, "a quarter of the stream")
    victim = int(kafka3[1].read_text())
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: model.produced > events // 2, 60, "half the stream with one broker down")
    subprocess.run([STACK, "kafka3-up", "2"], check=True, env={**os.environ, "KAFKA_HEAP": "384m"})
    stream.join()
    assert model.failed == 0
    wait_converged(settings, timeout=120)
    diff = compare(model.view(), snapshot(store, 1))
    print(f"broker 2 of 3 killed: events={model.produced} missing={diff.missing} stale={diff.stale} extra={diff.extra}")
    assert diff.ok, diff
    assert consumer.alive()
