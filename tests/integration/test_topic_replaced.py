"""An event topic deleted and created again under its name, on the real broker: its offsets start at 0.

The same happens when the events are mirrored to a new cluster (MirrorMaker numbers them anew) and
the consumers are pointed at it. No rig replaced the topic under saved positions: the consumer
resumed at them on the new topic and skipped as many of its events without a word (40 of 100 new
users never projected, after a restart and while running alike). Now the topic id says so.
"""

from __future__ import annotations

import json
from dataclasses import replace

from confluent_kafka.admin import AdminClient

from adapters.generations import Generations
from adapters.kafka import ensure_topics, security_config
from adapters.lineage import TopicRecord, topic_id
from tests.helpers import start_consumer, stop_consumer, wait_until


def produce(producer, topic, names, phone):
    """One event per name, all on partition 0: the saved position there is the number of names."""
    for name in names:
        producer.produce(topic, value=json.dumps({"name": name, "phone": phone, "since": 1_000}).encode(), partition=0)
    assert producer.flush(10) == 0


def replace_topic(settings, admin) -> str:
    """Delete the event topic and create it again (as an operator "resetting" it would); the new id."""
    old = topic_id(admin, settings.topic)
    for future in admin.delete_topics([settings.topic], request_timeout=10).values():
        future.result(30)

    def recreated():
        ensure_topics(settings, partitions=6)
        return (new := topic_id(admin, settings.topic)) not in (None, old) and new

    return wait_until(recreated, 60, "the topic to be created again")


def projected(store, names):
    return all((s := store.get(n.lower(), store.live_generation())) and s.user for n in names)


def test_positions_saved_on_a_replaced_topic_are_never_resumed_from(settings, producer, store, name_tag, tmp_path):
    # Set by this test: the watch asks every second instead of every 10 s, so the running case
    # below waits about a second for it (the same code path; the suite's time is budgeted).
    settings = replace(settings, topic_check_s=1.0)
    admin = AdminClient(security_config(settings))  # type: ignore[arg-type]
    old_only = [f"{name_tag} old {i}" for i in range(40)]  # partition 0's position: 40
    after_restart = [f"{name_tag} restart {i}" for i in range(100)]
    while_running = [f"{name_tag} running {i}" for i in range(140)]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_consumer(settings, first_log)
    try:
        produce(producer, settings.topic, old_only, 9_000_000_001)
        wait_until(lambda: projected(store, old_only), 60, "the first topic's users")
    finally:
        stop_consumer(first, first_log)

    restart_id = replace_topic(settings, admin)
    produce(producer, settings.topic, after_restart, 9_000_000_002)
    second = start_consumer(settings, second_log)
    try:
        wait_until(lambda: projected(store, after_restart), 60, "all 100 of the new topic's users")
        assert TopicRecord(Generations(store)).read(store.live_generation()) == restart_id
        # Replaced again under the running consumer, now at position 100 there (a shorter
        # while: the watch asks every second here, and the broker answers at once).
        replace_topic(settings, admin)
        produce(producer, settings.topic, while_running, 9_000_000_003)
        wait_until(lambda: projected(store, while_running), 60, "all 140 of the third topic's users")
    finally:
        stop_consumer(second, second_log)
    assert projected(store, old_only)  # only the first topic had them: they stay, as the line says
    text = second_log.read_text(errors="replace")
    assert text.count("is not the topic generation 1's positions were saved on") == 2, text[-3000:]
    assert "`ums-find reconcile`" in text
