"""A paced rebuild (UMS_REBUILD_EVENTS_PER_S): slower by construction, the same projection."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from adapters.clients import kafka_producer
from devtools.addservice import event_value
from domain import Name, PhoneNumber, User
from tests.helpers import run_cli

EVENTS, RATE = 600, 100  # 6 s at the pace; unpaced, the same replay takes 1-2 s of process start and work


def test_a_paced_replay_takes_its_events_over_the_rate_and_builds_the_same_projection(settings, store, name_tag):
    users = [
        User(Name(f"{name_tag} paced {i:03d}"), PhoneNumber(9_400_000_000 + i), datetime.now(UTC))
        for i in range(EVENTS)
    ]
    producer = kafka_producer(settings)
    for user in users:
        producer.produce(settings.topic, value=event_value(user))
    assert producer.flush(10) == 0

    started = time.monotonic()
    result = run_cli(settings, "replay", UMS_REBUILD_EVENTS_PER_S=str(RATE))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    # A lower bound only: the pace sleeps until every event has had 1 / RATE seconds.
    assert took >= EVENTS / RATE, f"the replay took {took:.1f} s, under the pace's {EVENTS / RATE:.0f} s"
    generation = store.live_generation()
    for user in users:
        assert store.get(user.name.canonical, generation).user == user
