"""A paced rebuild (UMS_REBUILD_EVENTS_PER_S): slower by construction, the same projection."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from domain import User
from tests.helpers import BIN, ROOT, env_of, produce_users, run_cli, wait_until

EVENTS, RATE = 600, 100  # 6 s at the pace; unpaced, the same replay takes 1-2 s of process start and work


def _produce(settings, name_tag: str, tag: str) -> list[User]:
    return produce_users(settings, f"{name_tag} {tag}", EVENTS, 9_400_000_000)


def test_a_paced_replay_takes_its_events_over_the_rate_and_builds_the_same_projection(settings, store, name_tag):
    users = _produce(settings, name_tag, "paced")

    started = time.monotonic()
    result = run_cli(settings, "replay", UMS_REBUILD_EVENTS_PER_S=str(RATE))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    # A lower bound only: the pace sleeps until every event has had 1 / RATE seconds.
    assert took >= EVENTS / RATE, f"the replay took {took:.1f} s, under the pace's {EVENTS / RATE:.0f} s"
    generation = store.live_generation()
    for user in users:
        assert store.get(user.name.canonical, generation).user == user


@pytest.mark.parametrize("workers", [1, 2])
def test_an_operator_lifts_a_running_rebuilds_pace_and_it_finishes_without_starting_over(
    settings, store, name_tag, workers
):
    users = _produce(settings, name_tag, "lifted")
    slow = 20  # EVENTS would take 30 s at this pace
    replay = subprocess.Popen(
        [str(BIN / "ums-find"), "--log-text", "replay"],
        env=env_of(settings, UMS_REBUILD_EVENTS_PER_S=str(slow), UMS_REPLAY_WORKERS=str(workers)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = wait_until(lambda: run_cli(settings, "pace").stdout, 60, "`ums-find pace` to show the rebuild")
        assert re.fullmatch(rf"rebuild of generation \d+: {slow} events/s\n", shown), shown
        generation = int(shown.split()[3].rstrip(":"))
        # Lifted while the rebuild sleeps, not before its first write: a chunk is sent, then paced.
        written = store.key(generation, "*")
        wait_until(
            lambda: next(store.client.scan_iter(match=written, count=1000), None), 60, "the rebuild's first write"
        )
        lifted_at = time.monotonic()
        lifted = run_cli(settings, "pace", "0")
        assert lifted.returncode == 0, lifted.stderr
        assert lifted.stdout.startswith(f"rebuild of generation {generation}: unpaced"), lifted.stdout
        _, stderr = replay.communicate(timeout=60)
        took = time.monotonic() - lifted_at
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    assert replay.returncode == 0, stderr
    assert "rebuild pace now unpaced" in stderr
    # At the old pace what was left would have taken most of 30 s; unpaced it is seconds (and the
    # wait before the old generation's deletion). Half is far from both.
    assert took < EVENTS / slow / 2, f"the replay took {took:.1f} s after its pace was lifted"
    assert store.live_generation() == generation  # the same rebuild went on: nothing started over
    for user in users:
        assert store.get(user.name.canonical, generation).user == user

    nothing = run_cli(settings, "pace", "100")
    assert nothing.returncode == 1 and "no rebuild is running" in nothing.stderr, nothing
