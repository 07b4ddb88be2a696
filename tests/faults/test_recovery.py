"""Recovery on a broker with Kafka's defaults: wipes and rebuilds, however consumers start.

Every test compares the whole live projection with the model of what was produced:
0 missing, 0 stale, 0 extra. The broker runs group.initial.rebalance.delay.ms=3000
(Kafka's default), so consumers started together share the partitions from the start.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.generations import Generations
from consumer.governor import PROBE_NAME
from tests.conftest import CLUSTER_TOO
from tests.faults.rig import (
    PrivateRedis,
    ReplayProcess,
    fixed_pace,
    keys_outside_live,
    live_snapshot,
    produce,
    produce_in_background,
    random_events,
    replayed_events,
    run_replay,
    wait_whole,
)
from tests.helpers import wait_until


@pytest.fixture
def settings(settings, redis_kind, tmp_path):
    """A Redis of this test only (FLUSHALL is the wipe), or the Cluster rig for the Cluster variants."""
    if redis_kind == "cluster":
        yield settings
        return
    server = PrivateRedis(tmp_path, persist=False)
    server.start()
    yield replace(settings, redis_url=f"redis://127.0.0.1:{server.port}/0")
    server.stop()


USERS = 40_000
EVENTS = 100_000  # later events update the phones of earlier users
# The churn test: what a rebuild shows readers, not how fast. A fixed pace (rig.fixed_pace) makes the
# replay of the 100k-odd events backlogged at its claim take ~13 s, through the tail of its 6 s of
# writes and several stops and starts of the churning consumer.
CHURN_PACE = 8_000


def report(test: str, **figures: object) -> None:
    print(f"{test}: " + " ".join(f"{k}={v}" for k, v in figures.items()))


@CLUSTER_TOO
def test_wipe_then_three_consumers_started_together(settings, store, fault_producer, model, consumers, rng, name_tag):
    produce(fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model)
    first = [consumers("a").start() for _ in range(3)]
    wait_whole(store, model, 240, "the first projection")
    for consumer in first:
        consumer.stop()
    store.client.flushall()
    fresh = [consumers("b").start() for _ in range(3)]  # together: one rebalance shares the partitions
    seconds = wait_whole(store, model, 240, "the projection after the wipe")
    assert all(c.alive() for c in fresh)
    assert sum(c.assigned() for c in fresh) == 6
    report(
        "wipe, 3 started together",
        events=EVENTS,
        users=len(model.view()),
        consumers=3,
        missing=0,
        stale=0,
        seconds_to_whole=round(seconds, 1),
    )


def test_wipe_while_three_consumers_run(settings, store, fault_producer, model, consumers, rng, name_tag):
    running = [consumers().start() for _ in range(3)]
    during = produce_in_background(
        fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model, per_second=25_000
    )
    wait_until(lambda: len(live_snapshot(store)) > USERS // 4, 60, "a quarter of the users")
    store.client.flushall()  # mid-stream
    during.join()
    seconds = wait_whole(store, model, 240, "the projection after a wipe mid-stream")
    assert all(c.alive() for c in running)
    report(
        "wipe while running",
        events=EVENTS,
        users=len(model.view()),
        consumers=3,
        missing=0,
        stale=0,
        seconds_to_whole=round(seconds, 1),
    )


def test_wipe_during_a_replay(settings, store, fault_producer, model, consumers, rng, name_tag, tmp_path):
    produce(fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model)
    running = [consumers().start() for _ in range(3)]
    wait_whole(store, model, 240)
    generations = Generations(store)
    replay = ReplayProcess(settings, tmp_path).start()
    wait_until(lambda: generations.read().building is not None, 60, "the replay's claim")
    store.client.flushall()
    code = replay.wait()
    # Either the replay saw its claim vanish (exit 3), or it finished first; never a flip into the void.
    assert code in (0, 3), replay.text()[-3000:]
    seconds = wait_whole(store, model, 240, "the projection after a wipe during a replay")
    assert generations.sweep() >= 0
    assert keys_outside_live(store) == 0
    assert all(c.alive() for c in running)
    report(
        "wipe during replay",
        events=EVENTS,
        users=len(model.view()),
        consumers=3,
        replay_exit=code,
        missing=0,
        stale=0,
        seconds_to_whole=round(seconds, 1),
    )


def test_replay_killed_three_times_then_a_new_one(
    settings, store, fault_producer, model, consumers, rng, name_tag, tmp_path
):
    produce(fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model)
    running = [consumers().start() for _ in range(3)]
    wait_whole(store, model, 240)
    generations = Generations(store)
    # A short lease (the default is 30 s) so that each killed replay's claim expires quickly; 2 s, as
    # the paused replay's test has it.
    lease = {"UMS_REBUILD_LEASE_S": "2"}
    moments = []
    for n in range(3):
        replay = ReplayProcess(settings, tmp_path, f"killed{n}", **lease).start()
        wait_until(lambda: generations.read().building is not None, 60, "the replay's claim")
        moment = rng.uniform(0.0, 2.0)
        moments.append(round(moment, 2))
        time.sleep(moment)  # a random moment of the rebuild to kill it at, not synchronisation
        replay.signal(signal.SIGKILL)
        replay.wait()
        wait_until(lambda: generations.read().building is None, 30, "the killed replay's lease to expire")
        wait_whole(store, model, 60, "the live generation (untouched by the killed replay)")
    result = run_replay(settings, **lease)
    assert result.returncode == 0, result.stderr[-3000:]
    wait_whole(store, model, 60, "the rebuilt projection")
    assert "deleted" in result.stdout
    generations.sweep()
    left = keys_outside_live(store)
    assert left == 0
    assert all(c.alive() for c in running)
    report(
        "replay kill -9 x3",
        events=EVENTS,
        users=len(model.view()),
        kills=3,
        moments_s=moments,
        missing=0,
        stale=0,
        keys_left=left,
    )


@CLUSTER_TOO
def test_replay_under_churn_never_shows_a_user_missing_or_older(
    settings, store, fault_producer, model, consumers, rng, name_tag
):
    produce(fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model)
    steady = [consumers().start() for _ in range(2)]
    churner = consumers("churn").start()
    wait_whole(store, model, 240)
    known = sorted(live_snapshot(store))
    violations: list[str] = []
    reads = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal reads
        seen: dict[str, tuple[int, int, int]] = {}
        pick = random.Random(7)
        while not done.is_set():
            name = pick.choice(known)
            generation = store.live_generation()
            held = store.get(name, generation) if generation is not None else None
            reads += 1
            if held is None:
                violations.append(f"{name}: missing in generation {generation}")
            elif seen.get(name, held.version) > held.version:
                violations.append(f"{name}: went back from {seen[name]} to {held.version} in {generation}")
            if held is not None:
                seen[name] = held.version

    def churn() -> None:
        while not done.is_set():
            churner.stop()
            done.wait(rng.uniform(1.0, 3.0))
            churner.start()
            done.wait(rng.uniform(2.0, 4.0))

    threads = [threading.Thread(target=reader), threading.Thread(target=churn)]
    for thread in threads:
        thread.start()
    during = produce_in_background(
        fault_producer, settings.topic, random_events(rng, USERS + 2000, 30_000, name_tag), model, per_second=5000
    )
    try:
        result = run_replay(settings, **fixed_pace(CHURN_PACE))
        during.join()
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert result.returncode == 0, result.stderr[-3000:]
    assert replayed_events(result.stdout) < EVENTS + 30_000  # writes came after the claim: the two overlapped
    if not churner.alive():
        churner.start()
    wait_whole(store, model, 120, "the projection after the rebuild")
    assert reads > 1000
    assert violations == [], violations[:10]
    assert all(c.alive() for c in steady)
    report(
        "replay under churn",
        events=EVENTS + 30_000,
        users=len(model.view()),
        consumers=3,
        reads=reads,
        violations=0,
        missing=0,
        stale=0,
    )


def test_a_paused_replay_cannot_flip_delete_or_write_the_pointer(
    settings, store, fault_producer, model, consumers, rng, name_tag, tmp_path
):
    produce(fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model)
    running = [consumers().start() for _ in range(3)]
    wait_whole(store, model, 240)
    generations = Generations(store)
    # A 2 s lease so that the pause outlives it quickly (the default is 30 s).
    first = ReplayProcess(settings, tmp_path, "paused", UMS_REBUILD_LEASE_S="2").start()
    claimed = wait_until(lambda: generations.read().building, 60, "the first replay's claim")
    first.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: generations.read().building is None, 30, "the paused replay's lease to expire")
        second = run_replay(settings)
        assert second.returncode == 0, second.stderr[-3000:]
        pointer = generations.read()
        assert pointer.live != claimed
    finally:
        first.signal(signal.SIGCONT)
    code = first.wait(120)
    assert code == 3, first.text()[-3000:]
    assert "no longer held" in first.text() or "expired or was taken" in first.text()
    assert generations.read() == pointer  # the resumed replay changed nothing
    wait_whole(store, model, 60, "the second replay's projection")
    assert keys_outside_live(store) == 0
    assert all(c.alive() for c in running)
    report(
        "paused replay",
        events=EVENTS,
        users=len(model.view()),
        paused_generation=claimed,
        live_generation=pointer.live,
        first_exit=code,
        missing=0,
        stale=0,
    )


@pytest.mark.parametrize("drop", ["before", "after"])
def test_a_flip_cut_off_from_redis_never_deletes_the_live_generation(
    settings, store, fault_producer, model, consumers, rng, name_tag, drop, flip_cutter
):
    produce(fault_producer, settings.topic, random_events(rng, 5000, 12_000, name_tag), model)
    running = consumers().start()
    wait_whole(store, model, 120)
    generations = Generations(store)
    before = generations.read()
    # A 3 s lease (the default is 30 s): cut before its flip, the replay's claim stays until it expires.
    with pytest.raises(Exception) as failed:
        flip_cutter(replace(settings, rebuild_lease_s=3.0), drop).run()
    flip_cutter.heal()
    after = generations.read()
    expected_live = before.live if drop == "before" else after.live
    assert after.live == expected_live
    if drop == "after":
        assert after.live != before.live  # the flip ran; only its reply was lost
    wait_whole(store, model, 60, "the live generation after the cut flip")
    wait_until(lambda: generations.read().building is None, 60, "the cut replay's lease to expire")
    generations.sweep()
    assert keys_outside_live(store) == 0
    assert running.alive()
    report(
        "flip cut",
        drop=drop,
        error=type(failed.value).__name__,
        live_before=before.live,
        live_after=after.live,
        missing=0,
        stale=0,
    )


@pytest.mark.soak
def test_wipe_of_a_million_users_with_three_consumers(settings, store, fault_producer, model, consumers, rng, name_tag):
    """`make soak`: how long 1M users take to be whole again after a wipe, 3 consumers started together."""
    users = 1_000_000
    produce(fault_producer, settings.topic, random_events(rng, users, users, name_tag), model)
    first = [consumers("a").start() for _ in range(3)]
    wait_whole(store, model, 1200, "the first projection")
    for consumer in first:
        consumer.stop()
    store.client.flushall()
    wiped = time.monotonic()
    [consumers("b").start() for _ in range(3)]
    seconds = wait_whole(store, model, 1200, "the projection after the wipe")
    report(
        "wipe of 1M users",
        users=len(model.view()),
        consumers=3,
        missing=0,
        stale=0,
        seconds_to_whole=round(time.monotonic() - wiped, 1),
        polled_s=round(seconds, 1),
    )


def replay_workers(pid: int, probe: bool = False) -> list[int]:
    """The spawned replay workers of process `pid` (not multiprocessing's resource tracker), or its
    governor's probe process (`probe`)."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    spawned = [k for k in kids if b"spawn_main" in _cmdline(k)]
    return [k for k in spawned if (_comm(k) == PROBE_NAME) == probe]


def _comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        return b""


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (an orphan's new parent may not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_replay_workers_die_with_a_killed_replay(
    settings, store, fault_producer, model, consumers, rng, name_tag, tmp_path
):
    """SIGKILL reaches only the parent; its workers must not go on writing to the abandoned generation."""
    produce(fault_producer, settings.topic, random_events(rng, USERS, EVENTS, name_tag), model)
    running = [consumers().start()]
    wait_whole(store, model, 240)
    generations = Generations(store)
    lease = {"UMS_REBUILD_LEASE_S": "3"}  # the default 30 s would only make the test wait longer
    replay = ReplayProcess(settings, tmp_path, "workers", UMS_REPLAY_WORKERS="2", **lease).start()
    assert replay.proc is not None
    pid = replay.proc.pid
    workers = wait_until(lambda: replay_workers(pid) if len(replay_workers(pid)) == 2 else None, 60, "2 workers")
    probe = wait_until(lambda: replay_workers(pid, probe=True), 10, "the governor's probe (one per rebuild)")
    assert len(probe) == 1, probe
    replay.signal(signal.SIGKILL)
    replay.wait()
    # Within a second: the workers are still starting or have most of their 100k events ahead
    # (about 2 s of work); an orphan would write them into the generation the sweep deletes.
    # The probe too: an orphan probe would ping Redis forever.
    wait_until(lambda: all(gone(w) for w in workers + probe), 1, "the workers and the probe to die with their parent")
    wait_until(lambda: generations.read().building is None, 30, "the killed replay's lease to expire")
    generations.sweep()
    assert keys_outside_live(store) == 0
    wait_whole(store, model, 60, "the live generation (untouched by the killed replay)")
    result = run_replay(settings, UMS_REPLAY_WORKERS="2", **lease)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "in 2 processes" in result.stderr
    wait_whole(store, model, 60, "the projection two workers rebuilt")
    assert keys_outside_live(store) == 0
    assert all(c.alive() for c in running)
    report("replay workers killed", events=EVENTS, users=len(model.view()), workers=len(workers), keys_left=0)
