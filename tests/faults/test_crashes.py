"""Crashes and clean stops of the consumer: the projection ends exactly right."""

from __future__ import annotations

import pytest

from tests.faults.rig import committed_count, compare, produce_in_background, random_events, snapshot, wait_converged
from tests.helpers import wait_until


@pytest.mark.parametrize(
    "events, kills",
    [
        pytest.param(50_000, 3, id="50k-3kills"),
        pytest.param(200_000, 10, id="200k-10kills", marks=pytest.mark.soak),
    ],
)
def test_kill_9_at_random_moments(settings, store, fault_producer, model, consumers, rng, name_tag, events, kills):
    users = events // 10
    values = random_events(rng, users=users, count=events, tag=name_tag)
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 8)
    consumer = consumers().start()
    for k in range(kills):
        # A random point of progress, not a random sleep: the kill lands mid-stream.
        target = int(events * (k + rng.random()) / (kills + 1))
        wait_until(
            lambda t=target: committed_count(settings) >= t, 120, f"{target} events before kill {k + 1}", interval=0.2
        )
        consumer.kill()
        consumer.start()
    producer.join()
    assert model.failed == 0
    wait_converged(settings)
    diff = compare(model.view(), snapshot(store, 1))
    print(
        f"kill -9: events={model.produced} kills={kills} users={diff.checked} "
        f"missing={diff.missing} stale={diff.stale} extra={diff.extra}"
    )
    assert diff.ok, diff
    assert model.produced == events


def test_sigterm_five_times_applies_nothing_twice(settings, store, fault_producer, model, consumers, rng, name_tag):
    events = 20_000
    values = random_events(rng, users=4000, count=events, tag=name_tag)
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 8)
    consumer = consumers().start()
    stop_seconds = []
    for k in range(5):
        target = int(events * (k + rng.random()) / 6)
        wait_until(
            lambda t=target: committed_count(settings) >= t, 120, f"{target} events before stop {k + 1}", interval=0.2
        )
        consumer.wait_running()
        stop_seconds.append(consumer.stop())
        consumer.start()
    producer.join()
    wait_converged(settings)
    consumer.wait_running()
    consumer.stop()
    totals = consumer.totals()
    assert len(totals) == 6
    consumed = sum(t["messages"] for t in totals)
    diff = compare(model.view(), snapshot(store, 1))
    print(
        f"SIGTERM x5: events={model.produced} consumed={consumed} stops_s={[round(s, 1) for s in stop_seconds]} "
        f"missing={diff.missing} stale={diff.stale} extra={diff.extra}"
    )
    # Every clean stop committed exactly what it had written: nothing was consumed twice.
    assert consumed == model.produced == events
    assert diff.ok, diff
    assert max(stop_seconds) < 10
