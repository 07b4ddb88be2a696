"""Dependency faults on the write side: a dead-letter flood through a broker restart, a Cluster reshard."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest
import requests
from confluent_kafka import Consumer, KafkaException, TopicPartition

from adapters.kafka import consumer_config
from tests.faults.rig import ROOT, live_snapshot, produce, produce_in_background, random_events, wait_whole
from tests.helpers import unique, wait_until


def dead_letters(settings) -> list[tuple[str, str]]:
    """(original partition, original offset) of every message in the DLQ, read from the start."""
    reader = Consumer(consumer_config(settings, **{"group.id": unique("dlq-reader"), "enable.auto.commit": False}))
    tp = TopicPartition(settings.dead_letter_topic, 0, 0)
    _, high = reader.get_watermark_offsets(tp, timeout=10)
    reader.assign([tp])
    seen: list[tuple[str, str]] = []
    try:
        while len(seen) < high:
            for msg in reader.consume(5000, 1.0):
                if msg.error() is None:
                    headers = {k: v.decode() for k, v in msg.headers() or []}
                    seen.append((headers["ums.original.partition"], headers["ums.original.offset"]))
    finally:
        reader.close()
    return seen


def test_a_poison_flood_through_a_broker_restart_is_dead_lettered_exactly_once(
    settings, fault_producer, model, consumers, name_tag
):
    flood = 10_000
    values = [json.dumps({"name": f"{name_tag} p{i}", "phone": 1}).encode() for i in range(flood)]  # invalid phone
    consumer = consumers().start()
    pid = consumer.pid
    producing = produce_in_background(fault_producer, settings.topic, values, model, per_second=2500)
    wait_until(lambda: consumer.text().count("dead-lettering message") > flood // 5, 60, "a fifth of the flood")
    stack = str(ROOT / "services" / "stack.sh")
    subprocess.run([stack, "stop", "kafka"], check=True)  # the DLQ's broker goes away mid-flood
    subprocess.run([stack, "up"], check=True)
    producing.join()
    assert model.poison == flood

    def all_there() -> bool:
        try:
            return len(dead_letters(settings)) >= flood
        except KafkaException:  # the restarted broker is still electing leaders
            return False

    wait_until(all_there, 180, "every dead letter", interval=2)
    letters = dead_letters(settings)
    print(
        f"dlq flood: poison={flood} dead_letters={len(letters)} unique={len(set(letters))} "
        f"pid_kept={consumer.pid == pid}"
    )
    assert len(letters) == flood
    assert len(set(letters)) == flood  # no duplicates
    assert consumer.pid == pid and consumer.alive(), "the consumer restarted"


@pytest.mark.parametrize("redis_kind", ["cluster"], indirect=True)
def test_a_reshard_of_a_third_of_the_slots_during_a_stream(
    settings, store, fault_producer, model, consumers, rng, name_tag, start_api
):
    produce(fault_producer, settings.topic, random_events(rng, 10_000, 10_000, name_tag), model)
    consumer = consumers().start()
    wait_whole(store, model, 120, "the projection before the reshard")
    api = start_api()
    known = sorted(live_snapshot(store))
    statuses: dict[int, int] = {}
    done = threading.Event()

    def reader() -> None:
        session = requests.Session()
        pick = rng.randrange
        while not done.is_set():
            status = session.get(f"{api.base}/user/{known[pick(len(known))]}", timeout=5).status_code
            statuses[status] = statuses.get(status, 0) + 1

    thread = threading.Thread(target=reader)
    thread.start()
    during = produce_in_background(
        fault_producer, settings.topic, random_events(rng, 12_000, 30_000, name_tag), model, per_second=3000
    )
    try:
        ids = {
            p: subprocess.run(
                ["redis-cli", "-p", str(p), "cluster", "myid"], capture_output=True, text=True, check=True
            ).stdout.strip()
            for p in (7000, 7001, 7002)
        }
        moved = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "reshard",
                "127.0.0.1:7000",
                "--cluster-from",
                f"{ids[7000]},{ids[7001]}",  # half of each: a master left empty would turn replica
                "--cluster-to",
                ids[7002],
                "--cluster-slots",
                "5461",
                "--cluster-yes",
                "--cluster-pipeline",
                "50",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert moved.returncode == 0, moved.stdout[-2000:] + moved.stderr[-2000:]
        during.join()
        seconds = wait_whole(store, model, 120, "the projection after the reshard")
    finally:
        done.set()
        thread.join()
        # Spread the slots evenly again so that later tests see the rig as it was made.
        subprocess.run(["redis-cli", "--cluster", "rebalance", "127.0.0.1:7000"], capture_output=True, timeout=300)
    info = subprocess.run(["redis-cli", "-p", "7000", "cluster", "info"], capture_output=True, text=True).stdout
    assert "cluster_state:ok" in info and "cluster_size:3" in info, info
    errors = sum(n for status, n in statuses.items() if status >= 500)
    print(
        f"reshard: slots=5461 events={model.produced} reads={sum(statuses.values())} statuses={statuses} "
        f"missing=0 stale=0 seconds_to_whole_after={seconds:.1f}"
    )
    assert errors == 0, statuses
    assert statuses.get(200, 0) > 100
    assert consumer.alive()
