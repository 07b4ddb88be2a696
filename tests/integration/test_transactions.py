"""A transactional AddService (an outbox relay, Spring's transactionIdPrefix), on the real broker.

The rigs' producers never used transactions. A transactional producer leaves control records
(commit and abort markers) in the log and, when it aborts, records no reader may see. What could
go wrong, and is checked here: an aborted user projected (the consumers read uncommitted data),
a replay that never ends or never flips because the last offset of a partition is a marker it
never receives, and a lag that never returns to 0 (the markers counted as unread events: a
readiness that flips and an alert that pages on an idle topic).
"""

from __future__ import annotations

import json

from confluent_kafka import Producer

from adapters.kafka import security_config
from tests.helpers import heartbeat, run_cli, start_consumer, stop_consumer, unique, wait_until


def transaction(producer, topic, names, commit):
    producer.begin_transaction()
    for i, name in enumerate(names):
        value = json.dumps({"name": name, "phone": 9_000_000_001, "since": 1_000}).encode()
        producer.produce(topic, value=value, partition=i % 6)  # a marker on every partition
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def test_aborted_events_are_never_projected_and_markers_are_not_lag(settings, store, name_tag, tmp_path):
    producer = Producer({**security_config(settings), "transactional.id": unique("addservice")})
    producer.init_transactions(30)
    kept = [f"{name_tag} kept {i}" for i in range(30)]
    aborted = [f"{name_tag} aborted {i}" for i in range(30)]
    later = [f"{name_tag} later {i}" for i in range(30)]
    log = tmp_path / "consumer.log"
    consumer = start_consumer(settings, log)
    try:
        transaction(producer, settings.topic, kept, commit=True)
        transaction(producer, settings.topic, aborted, commit=False)
        transaction(producer, settings.topic, later, commit=True)
        transaction(producer, settings.topic, [f"{name_tag} last {i}" for i in range(6)], commit=False)
        live = store.live_generation
        wait_until(lambda: all(store.get(n.lower(), live()) for n in kept + later), 60, "the committed users")
        # Every partition ends with an abort marker: read up to it, nothing is left to read.
        wait_until(lambda: getattr(heartbeat(settings.heartbeat_file), "lag", None) == 0, 30, "the lag to return to 0")
    finally:
        stop_consumer(consumer, log)
    before = store.live_generation()
    assert [n for n in aborted if store.get(n.lower(), before)] == []

    result = run_cli(settings, "replay", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    target = store.live_generation()
    assert target != before
    assert all(store.get(n.lower(), target) for n in kept + later)
    assert [n for n in aborted if store.get(n.lower(), target)] == []
