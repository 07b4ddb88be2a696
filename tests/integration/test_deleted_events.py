"""Events the broker deleted before anyone projected them (retention, DeleteRecords), on the real broker.

Production topics have a retention (Kafka's default is 7 days) unless someone set it to forever;
the rigs keep every event. A consumer away longer than that (or a Redis restored from an old
backup, which sets its positions back) resumes where the log now starts: librdkafka logged one
warning and nothing else said that the span between was never projected. A Kafka-only replay
of such a topic flipped a generation without every user whose events were gone, and deleted the
old generation that still had them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from adapters.generations import Generations
from adapters.kafka import security_config
from consumer.replay import Rebuild
from consumer.replay_kafka import EventsDeleted
from tests.helpers import run_cli, start_consumer, stop_consumer, wait_until


def produce(producer, topic, names, phone, partition=0):
    """One event per name, all on one partition (so their offsets are known)."""
    for name in names:
        value = json.dumps({"name": name, "phone": phone, "since": 1_000}).encode()
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(10) == 0


def delete_before(settings, offset):
    """What retention does to partition 0: every event below `offset` is gone."""
    admin = AdminClient(security_config(settings))  # type: ignore[arg-type]
    for future in admin.delete_records([TopicPartition(settings.topic, 0, offset)]).values():
        future.result(timeout=30)


def phone_of(store, name):
    stored = store.get(name.lower(), store.live_generation())
    return stored.user.phone.value if stored and stored.user else None


def test_a_consumer_names_the_events_deleted_before_it_read_them(settings, producer, store, name_tag, tmp_path):
    before = [f"{name_tag} before {i}" for i in range(40)]  # offsets 0..39
    gone = [f"{name_tag} gone {i}" for i in range(40)]  # 40..79, deleted while no consumer runs
    kept = [f"{name_tag} kept {i}" for i in range(40)]  # 80..119
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_consumer(settings, first_log)
    try:
        produce(producer, settings.topic, before, 9_000_000_001)
        wait_until(lambda: all(phone_of(store, n) for n in before), 60, "the first consumer to project")
    finally:
        stop_consumer(first, first_log)
    assert "were deleted" not in first_log.read_text(errors="replace")  # read from offset 0: nothing lost

    produce(producer, settings.topic, [*gone[:20], before[0], *gone[20:39]], 9_000_000_002)  # before[0] changed
    produce(producer, settings.topic, kept, 9_000_000_003)
    delete_before(settings, 80)
    second = start_consumer(settings, second_log)
    try:
        wait_until(lambda: all(phone_of(store, n) for n in kept), 60, "the consumer to project what is left")
    finally:
        stop_consumer(second, second_log)
    text = second_log.read_text(errors="replace")
    assert "partition 0: offsets 40..79 were deleted from the topic" in text, text[-3000:]
    assert "its saved position" in text and "`ums-find reconcile`" in text, text[-3000:]
    # What the line warns of, really so: the deleted users are missing, the changed one stale.
    assert [n for n in gone[:39] if phone_of(store, n)] == []
    assert phone_of(store, before[0]) == 9_000_000_001


def test_a_kafka_only_replay_refuses_a_topic_that_lost_its_first_events(settings, producer, store, name_tag):
    names = [f"{name_tag} user {i}" for i in range(30)]
    produce(producer, settings.topic, names, 9_000_000_001)
    delete_before(settings, 10)
    generations = Generations(store)
    pointer, _ = generations.ensure()

    dry = run_cli(settings, "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "a Kafka-only replay is refused" in dry.stderr, dry.stderr

    result = run_cli(settings, "replay")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "partition 0 starts at offset 10" in result.stderr and "--source both" in result.stderr, result.stderr
    after = generations.read()
    assert after is not None and after.live == pointer.live and after.building is None  # no flip, no claim left


@pytest.mark.parametrize(("source", "workers"), [("kafka", 1), ("kafka", 2), ("both", 1)])
def test_events_deleted_after_the_plan_fail_a_kafka_only_rebuild(
    settings, producer, store, name_tag, mysql_writer, monkeypatch, capfd, source, workers
):
    """Retention deleting what a running rebuild has still to read: the plan said offset 0, the broker no
    longer has it. From Kafka alone that rebuild cannot be whole (no flip); over MySQL it may skip them."""
    names = [f"{name_tag} user {i}" for i in range(30)]
    produce(producer, settings.topic, names, 9_000_000_001)
    produce(producer, settings.topic, [f"{name_tag} other {i}" for i in range(30)], 9_000_000_001, partition=1)
    generations = Generations(store)
    pointer, _ = generations.ensure()
    read = Rebuild._watermarks
    monkeypatch.setattr(Rebuild, "_watermarks", lambda self: {p: (0, end) for p, (_, end) in read(self).items()})
    delete_before(settings, 10)
    chosen = replace(settings, replay_workers=workers)  # 2: a process per partition, each its own consumer
    rebuild = Rebuild(chosen, store, mysql_writer if source == "both" else None, stop=threading.Event())
    if source == "kafka":
        # One process raises the worker's error; two report it through the worker's exit status and log.
        with pytest.raises(EventsDeleted, match="partition 0: offset 0 is no longer" if workers == 1 else "no flip"):
            rebuild.run()
        if workers == 2:
            said = "ERROR consumer.replay_workers: partition 0: offset 0 is no longer in the topic"
            assert said in capfd.readouterr().err
        after = generations.read()
        assert after is not None and after.live == pointer.live and after.building is None
    else:
        result = rebuild.run()
        assert generations.read().live == result.target != pointer.live
        projected = [n for n in names if store.get(n.lower(), result.target)]
        assert projected == names[10:]  # the rest were in no snapshot: the test's users are not in MySQL


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rebuild_over_mysql_finishes_when_retention_took_all_a_partition_had_left(
    settings, producer, store, name_tag, mysql_writer, monkeypatch, workers
):
    """The plan said offsets 0..29 of partition 0 and the broker deleted them all before they were read.
    librdkafka resets to the log's start, past them, and with no new event never reports a position:
    a rebuild over MySQL, which may skip deleted offsets, waited for one forever."""
    gone = [f"{name_tag} gone {i}" for i in range(30)]
    kept = [f"{name_tag} kept {i}" for i in range(30)]
    produce(producer, settings.topic, gone, 9_000_000_001)
    produce(producer, settings.topic, kept, 9_000_000_001, partition=1)
    generations = Generations(store)
    generations.ensure()
    read = Rebuild._watermarks
    monkeypatch.setattr(Rebuild, "_watermarks", lambda self: {p: (0, end) for p, (_, end) in read(self).items()})
    delete_before(settings, 30)
    stop = threading.Event()
    rebuild = Rebuild(replace(settings, replay_workers=workers), store, mysql_writer, stop=stop)
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=rebuild.run()), daemon=True)
    runner.start()
    runner.join(60)
    if runner.is_alive():
        stop.set()  # ends the rebuild the old code never finished
        runner.join(30)
        pytest.fail("the rebuild was still waiting for the deleted partition after 60 s")
    result = outcome["result"]
    assert generations.read().live == result.target  # type: ignore[attr-defined]
    assert [n for n in kept if store.get(n.lower(), result.target)] == kept  # type: ignore[attr-defined]
    assert not any(store.get(n.lower(), result.target) for n in gone)  # type: ignore[attr-defined]
