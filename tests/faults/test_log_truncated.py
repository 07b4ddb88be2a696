"""A partition's log that lost offsets the consumer had saved (an unclean leader election), on real brokers.

Kafka refuses unclean elections by default; a topic or broker allowing them elects a replica whose log
ends before what the consumer read, and new events take the lost offsets. Before positions carried
leader epochs, the consumer resumed at its saved offset inside the new log and skipped every new event
below it without a word (the soak test below: 50 of 70 new users, after a restart and while running).

In the suite: the stack's broker restarted, which starts a new leader epoch at offset 10; a position
saved at offset 15 under the old epoch is what a consumer holds after reading offsets 10..14 on a leader
whose log was then cut back to 10 (the state the unclean election leaves); the new events at 10..14 must
be read. `make soak` runs the election itself on the 3-broker rig.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from adapters.clients import kafka_producer
from adapters.generations import Generations
from adapters.kafka import ensure_topics, security_config
from tests.faults.rig import ROOT
from tests.faults.test_scale_out import KAFKA3, kafka3  # noqa: F401  (the rig's fixture)
from tests.helpers import start_consumer, stop_consumer, wait_until

STACK = str(ROOT / "services" / "stack.sh")
SAID = "went back from offset"


def produce(producer, topic: str, names: list[str], phone: int) -> None:
    """One event per name, all on partition 0 (offsets follow the names' order)."""
    for name in names:
        producer.produce(topic, value=json.dumps({"name": name, "phone": phone, "since": 1_000}).encode(), partition=0)
    assert producer.flush(30) == 0


def epoch_at(settings, offset: int) -> int:
    """The leader epoch of partition 0's message at `offset`, as a consumer reads it."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": uuid.uuid4().hex})
    try:
        consumer.assign([TopicPartition(settings.topic, 0, offset)])
        msg = wait_until(lambda: next(iter(consumer.consume(1, 1)), None), 30, f"offset {offset}")
        assert msg.error() is None and msg.offset() == offset, msg.error()
        return msg.leader_epoch()
    finally:
        consumer.close()


def all_projected(store, names: list[str], consumer, log, what: str) -> str:
    """Wait until every one of `names` is projected, stop `consumer`; its log's text."""
    try:
        wait_until(lambda: projected(store, names) == len(names), 60, what)
    finally:
        stop_consumer(consumer, log)
    return log.read_text(errors="replace")


def projected(store, names: list[str]) -> int:
    generation = store.live_generation()
    return sum(1 for n in names if (s := store.get(n.lower(), generation)) and s.user)


def test_a_position_under_an_epoch_the_log_ended_before_reads_the_new_events_there(
    settings, producer, store, name_tag, tmp_path
):
    before = [f"{name_tag} before {i}" for i in range(10)]
    after = [f"{name_tag} after {i}" for i in range(10)]
    produce(producer, settings.topic, before, 9_000_000_001)
    old = epoch_at(settings, 9)
    subprocess.run([STACK, "stop", "kafka"], check=True)  # a new leader epoch starts at offset 10
    subprocess.run([STACK, "up"], check=True)
    produce(kafka_producer(settings), settings.topic, after, 9_000_000_002)
    assert epoch_at(settings, 10) > old
    generations = Generations(store)
    pointer, _ = generations.ensure()
    store.send_mark(generations.mark(pointer.live, {"0": 15}))
    assert generations.save_positions(pointer, {0: 15}, epochs={0: old})
    log = tmp_path / "consumer.log"
    text = all_projected(store, after, start_consumer(settings, log), log, "the events at offsets 10..19")
    assert text.count(SAID) == 1 and "went back from offset 15 to 10" in text, text[-3000:]
    assert projected(store, before) == 0  # read before offset 15 only under the old epoch: never here


def kill(node: int) -> None:
    pid = int((Path(os.environ["UMS_STACK_DIR"]) / "kafka3" / f"node{node}" / "kafka.pid").read_text())
    os.kill(pid, signal.SIGKILL)


def leader_and_isr(admin, topic: str) -> tuple[int | None, list[int]]:
    try:
        partition = admin.list_topics(topic, timeout=5).topics[topic].partitions[0]
    except Exception:  # a broker of the bootstrap list is down: asked again
        return None, []
    return partition.leader, sorted(partition.isrs)


@pytest.mark.soak
@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
def test_an_unclean_leader_election_loses_no_new_event(settings, store, name_tag, tmp_path, kafka3, restart):  # noqa: F811
    """Nodes 1 and 2 replicate the topic (min ISR 1, unclean elections allowed). Node 2 dies, node 1
    takes 50 more events alone, then dies too; node 2 comes back and is elected without them, and
    70 new events take offsets 50..119. Every one of them must be projected."""
    settings = replace(settings, kafka_bootstrap=KAFKA3)
    admin = AdminClient(security_config(settings))  # type: ignore[arg-type]
    allow = {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
    topic = NewTopic(settings.topic, num_partitions=1, replica_assignment=[[1, 2]], config=allow)
    admin.create_topics([topic])[settings.topic].result(30)
    ensure_topics(settings, partitions=1)  # its dead-letter topic
    producer = kafka_producer(settings)
    replicated, alone, new = ([f"{name_tag} {g} {i}" for i in range(n)] for g, n in (("a", 50), ("b", 50), ("c", 70)))
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    consumer = start_consumer(settings, first_log)
    produce(producer, settings.topic, replicated, 9_000_000_001)
    wait_until(lambda: projected(store, replicated) == 50, 60, "the replicated events")
    kill(2)
    wait_until(lambda: leader_and_isr(admin, settings.topic) == (1, [1]), 60, "node 1 alone in sync")
    produce(producer, settings.topic, alone, 9_000_000_002)
    wait_until(lambda: projected(store, alone) == 50, 60, "the events only node 1 has")
    if restart:
        stop_consumer(consumer, first_log)
    kill(1)
    subprocess.run([STACK, "kafka3-up", "2"], check=True, env={**os.environ, "KAFKA_HEAP": "384m"})
    wait_until(lambda: leader_and_isr(admin, settings.topic)[0] == 2, 60, "node 2 elected without them")
    produce(kafka_producer(settings), settings.topic, new, 9_000_000_003)
    subprocess.run([STACK, "kafka3-up", "1"], check=True, env={**os.environ, "KAFKA_HEAP": "384m"})
    log = second_log if restart else first_log
    if restart:
        consumer = start_consumer(settings, log)
    text = all_projected(store, new, consumer, log, "every new event")
    assert "went back from offset 100 to 50" in text, text[-3000:]
    assert projected(store, alone) == 50  # only the lost offsets held them: they stay (MySQL has them)
