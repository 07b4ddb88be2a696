"""The rebuild's governor (UMS_REBUILD_REDIS_DELAY_MS) against a real Redis: its probe, and a rebuild it slows."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading

import pytest

from adapters.values import parse_value
from consumer.governor import governor, probing
from tests.helpers import produce_users, run_cli, wait_until

EVENTS = 20_000


def probes_alive() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == "rebuild-probe"]


def test_the_probe_publishes_its_windows_and_stops_with_its_block(settings):
    with probing(dataclasses.replace(settings, rebuild_redis_delay_ms=2)) as shared:
        assert shared is not None and probes_alive()
        gov = governor(settings, shared)
        assert gov is not None
        window, delay = wait_until(gov.reading, 30, "the probe's first window")
        assert window >= 1 and 0 <= delay < 1.0, (window, delay)  # seconds above the fastest probe
    assert not probes_alive()


@pytest.mark.parametrize("workers", [1, 2])
def test_while_redis_answers_late_a_rebuild_slows_down_and_still_builds_every_user(settings, store, name_tag, workers):
    users = produce_users(settings, f"{name_tag} gov{workers}", EVENTS, 9_500_000_000 + workers * EVENTS)

    # Redis made late for everyone (reads and the rebuild's writes alike): 30 ms paused in every 60.
    stop = threading.Event()

    def pauses() -> None:
        while not stop.is_set():
            store.client.execute_command("CLIENT", "PAUSE", 30, "ALL")
            stop.wait(0.06)

    pauser = threading.Thread(target=pauses, daemon=True)
    pauser.start()
    try:
        # An operator's pace too, so the rebuild outlasts the probe's first windows (4 s at most unslowed).
        result = run_cli(
            settings,
            "replay",
            timeout=300,
            UMS_REBUILD_REDIS_DELAY_MS="2",
            UMS_REBUILD_EVENTS_PER_S="5000",
            UMS_REPLAY_WORKERS=str(workers),  # two: one probe, started by the parent, read by both workers
        )
    finally:
        stop.set()
        pauser.join()
        store.client.execute_command("CLIENT", "UNPAUSE")
    assert result.returncode == 0, result.stderr
    assert "rebuild slowed to" in result.stderr, result.stderr[-2000:]
    assert workers == 1 or "in 2 processes" in result.stderr
    generation = store.live_generation()
    canonicals = [user.name.canonical for user in users]
    held = store.get_raw_many(generation, canonicals)
    wrong = [
        u.name.canonical
        for u, raw in zip(users, held, strict=True)
        if raw is None or parse_value(raw, u.name.canonical).user != u
    ]
    assert wrong == [], f"{len(wrong)} of {len(users)} users missing or different, e.g. {wrong[:5]}"
    assert sum(1 for _ in store.client.scan_iter(match=store.key(generation, "*"), count=5000)) >= EVENTS
