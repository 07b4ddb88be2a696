"""A dead-letter topic nobody created, on a broker that does not create topics (the rig's, as production's).

`ums-find topics` creates both topics; a team that created only the event topic met its first
poison event with a crash: the first delivery waited 30 s for the topic to appear, and the retry's
`produce()` raised "Unknown topic" out of the consume loop, every restart alike. Now the consumer
says so at start, waits at the poison event with its readiness saying what for, and goes on once
the topic exists.
"""

from __future__ import annotations

import json
from dataclasses import replace

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from adapters.generations import Generations
from adapters.kafka import security_config
from tests.helpers import heartbeat, start_consumer, stop_consumer, unique, wait_until


def dead_letter_reasons(settings) -> list[bytes]:
    reader = Consumer({**security_config(settings), "group.id": unique("dlq-reader"), "auto.offset.reset": "earliest"})
    reader.subscribe([settings.dead_letter_topic])
    try:
        found = [m for m in reader.consume(10, 5) if m.error() is None]
        return [dict(m.headers() or [])["ums.error.class"] for m in found]
    finally:
        reader.close()


def test_a_missing_dead_letter_topic_is_named_waited_for_and_then_used(settings, producer, store, name_tag, tmp_path):
    chosen = replace(settings, dlq_topic=unique("ums-test-nodlq"))
    admin = AdminClient(security_config(settings))  # type: ignore[arg-type]
    log = tmp_path / "consumer.log"
    consumer = start_consumer(chosen, log)
    try:
        wait_until(lambda: "does not exist" in log.read_text(errors="replace"), 30, "the start-up check")
        producer.produce(settings.topic, value=b"not json", partition=0)
        valid = json.dumps({"name": f"{name_tag} after", "phone": 9_000_000_001, "since": 1_000}).encode()
        producer.produce(settings.topic, value=valid, partition=0)
        assert producer.flush(10) == 0
        beat = settings.heartbeat_file
        wait_until(lambda: getattr(heartbeat(beat), "waiting", "") == "dead-letter topic", 30, "the wait")
        assert consumer.poll() is None

        admin.create_topics([NewTopic(chosen.dead_letter_topic, 1, 1)])[chosen.dead_letter_topic].result(30)
        generations = Generations(store)
        wait_until(lambda: generations.all_positions(store.live_generation()).get(0) == 2, 60, "the stream to go on")
        assert dead_letter_reasons(chosen) == [b"invalid-json"]
        assert store.get(f"{name_tag} after".lower(), store.live_generation()) is not None
    finally:
        try:
            stop_consumer(consumer, log)
        finally:
            for future in admin.delete_topics([chosen.dead_letter_topic], request_timeout=10).values():
                future.exception(10)  # gone already (never created) is fine
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert text.count("does not exist") == 1, text[-3000:]
