"""A poison mix: every bad event reaches the dead-letter topic, every good one is applied, no restart."""

from __future__ import annotations

import json

from confluent_kafka import Consumer, TopicPartition

from adapters.kafka import consumer_config
from tests.faults.rig import compare, produce, random_events, snapshot, wait_converged
from tests.helpers import wait_until


def poison_mix(tag: str) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected error class) for each kind of poison the issue names."""
    good = {"name": f"{tag} fine name", "phone": 9731423166, "since": 1_700_000_000_000}

    def with_(**changes):
        return json.dumps({**good, **changes}).encode()

    return [
        (None, b"{not json", "invalid-json"),
        (None, b"\xff\xfe\x00garbage", "invalid-json"),
        (None, b"[]", "invalid-event"),
        (None, b'{"name": "x"' + b" " * (512 * 1024) + b"}", "oversized"),
        (None, None, "null-value"),
        (None, json.dumps({"phone": 9731423166}).encode(), "missing-field"),
        (None, json.dumps({"name": f"{tag} no phone"}).encode(), "missing-field"),
        (None, with_(name="short"), "invalid-name"),
        (None, with_(name="x" * 40), "invalid-name"),
        (None, with_(name=f"{tag} nul\x00char"), "invalid-name"),
        (None, with_(name=f"{tag} rtl\u202echar"), "invalid-name"),
        (None, with_(name=f"{tag} rlm\u200fmark"), "invalid-name"),
        (None, with_(phone=12345), "invalid-phone"),
        (None, with_(phone="9731423166"), "invalid-phone"),
        (None, with_(phone=-9731423166), "invalid-phone"),
        (None, with_(since="not a date"), "invalid-since"),
        (b"Somebody Else 1", with_(), "key-mismatch"),
    ]


def read_all(settings, topic, expected, timeout=30):
    reader = Consumer(consumer_config(settings, **{"group.id": settings.group_id + "-reader"}))
    reader.assign([TopicPartition(topic, 0, 0)])
    letters = []
    try:
        wait_until(
            lambda: letters.extend(m for m in reader.consume(100, 0.2) if not m.error()) or len(letters) >= expected,
            timeout,
            f"{expected} dead letters",
        )
        # Nothing more than expected arrives: read to the end once more.
        letters.extend(m for m in reader.consume(100, 1.0) if not m.error())
    finally:
        reader.close()
    return letters


def test_poison_mix(settings, store, fault_producer, model, consumers, rng, name_tag):
    consumer = consumers().start()
    pid = consumer.pid
    mix = poison_mix(name_tag)
    good = random_events(rng, users=300, count=3000, tag=name_tag)
    # Poison scattered through the good stream, three rounds of the whole mix.
    stream: list[tuple[bytes | None, bytes | None]] = [(None, v) for v in good]
    injected = []
    for _ in range(3):
        for key, value, reason in mix:
            stream.insert(rng.randrange(len(stream) + 1), (key, value))
            injected.append(reason)
    produce(fault_producer, settings.topic, [v for _, v in stream], model, keys=[k for k, _ in stream])
    wait_converged(settings)

    letters = read_all(settings, settings.dead_letter_topic, len(injected))
    reasons = sorted(dict(m.headers())["ums.error.class"].decode() for m in letters)
    diff = compare(model.view(), snapshot(store, 1))
    print(
        f"poison: good={len(good)} injected={len(injected)} dead_lettered={len(letters)} "
        f"missing={diff.missing} stale={diff.stale} extra={diff.extra}"
    )
    assert reasons == sorted(injected)
    assert model.poison == len(injected)
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers()}
        assert headers["ums.original.topic"] == settings.topic
        assert int(headers["ums.original.partition"]) in range(6)
        assert int(headers["ums.original.offset"]) >= 0
        assert int(headers["ums.original.timestamp"]) > 0
        assert headers["ums.error.message"]
    assert diff.ok, diff
    assert consumer.pid == pid and consumer.alive(), "the consumer restarted"
