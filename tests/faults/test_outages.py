"""Redis and Kafka go away mid-stream; the consumer waits, resumes by itself, and loses nothing."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import replace

from adapters.clients import Role, projection_store
from adapters.generations import Generations, Pointer
from consumer.health import check_live, check_ready
from tests.faults.rig import (
    ROOT,
    PrivateRedis,
    ReplayProcess,
    compare,
    live_snapshot,
    produce,
    produce_in_background,
    random_events,
    run_replay,
    snapshot,
    wait_converged,
    wait_whole,
)
from tests.helpers import run_cli, wait_until

# The liveness probe's limit is 30 s in k8s/; the outage test runs it at 10 s and the outage for twice
# that: a heartbeat that holds a stricter limit holds the deployed one, and the suite keeps 25 s.
LIVE_MAX_AGE_S = 10
OUTAGE_S = 2 * LIVE_MAX_AGE_S


def probe(settings, kind: str) -> int:
    """The consumer's Kubernetes exec probe, run as the kubelet would (liveness at LIVE_MAX_AGE_S)."""
    limit = ["--max-age", str(LIVE_MAX_AGE_S)] if kind == "live" else []
    return run_cli(settings, "probe", kind, *limit, timeout=30).returncode


def test_redis_down_for_twice_the_liveness_limit(
    settings, fault_producer, model, consumers, rng, name_tag, private_redis
):
    settings = replace(settings, redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    store = projection_store(settings, Role.ADMIN)
    events = 20_000
    values = random_events(rng, users=2000, count=events, tag=name_tag)
    consumer = consumers(UMS_REDIS_URL=settings.redis_url).start()
    settings = replace(settings, heartbeat_file=str(consumer.health_path))
    pid = consumer.pid
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 15)
    wait_until(lambda: model.produced > events // 4, 30, "a quarter of the stream")
    private_redis.stop()
    wait_until(lambda: "failed, retrying" in consumer.text(), 30, "the consumer to notice the outage")
    down_since = time.monotonic()  # counted from when the consumer noticed: its heartbeat is what is tested
    # The outage lasts twice the liveness limit (a consumer that stopped writing its heartbeat while
    # it waits would fail the probe), past the 6 s session timeout and the retry backoff's 5 s cap.
    # Waiting on a dependency must read as alive (never restarted), and not ready.
    live_failures = probes = 0
    ready_seen_false = False
    while time.monotonic() - down_since < OUTAGE_S:
        probes += 1
        live_failures += check_live(str(consumer.health_path), LIVE_MAX_AGE_S) is not None
        ready_seen_false |= check_ready(str(consumer.health_path), 10_000, LIVE_MAX_AGE_S) is not None
        if probes % 10 == 0:  # the real command line too, now and then
            live_failures += probe(settings, "live") != 0
        assert consumer.alive(), "the consumer died during the Redis outage"
        time.sleep(1.0)  # the probe period, as a kubelet would run it
    private_redis.start()
    producer.join()
    wait_until(lambda: probe(settings, "ready") == 0, 60, "readiness to come back")
    wait_converged(settings)
    diff = compare(model.view(), snapshot(store, 1))
    retries = consumer.text().count("failed, retrying")
    print(
        f"redis outage {OUTAGE_S} s: events={model.produced} probes={probes} live_failures={live_failures} "
        f"ready_went_false={ready_seen_false} retries_logged={retries} "
        f"missing={diff.missing} stale={diff.stale} extra={diff.extra}"
    )
    assert probes >= OUTAGE_S // 2 and live_failures == 0  # probed through the outage, never found dead
    assert ready_seen_false
    assert consumer.pid == pid and consumer.alive(), "the consumer restarted"
    assert diff.ok, diff


def test_kafka_broker_restart(settings, store, fault_producer, model, consumers, rng, name_tag):
    events = 20_000
    values = random_events(rng, users=2000, count=events, tag=name_tag)
    consumer = consumers().start()
    pid = consumer.pid
    producer = produce_in_background(fault_producer, settings.topic, values, model, per_second=events / 10)
    wait_until(lambda: model.produced > events // 4, 30, "a quarter of the stream")
    stack = str(ROOT / "services" / "stack.sh")
    subprocess.run([stack, "stop", "kafka"], check=True)
    subprocess.run([stack, "up"], check=True)
    producer.join()
    assert model.failed == 0
    wait_converged(settings, timeout=120)
    diff = compare(model.view(), snapshot(store, 1))
    print(f"broker restart: events={model.produced} missing={diff.missing} stale={diff.stale} extra={diff.extra}")
    assert consumer.pid == pid and consumer.alive(), "the consumer restarted"
    assert diff.ok, diff


def test_redis_back_from_an_older_snapshot_is_filled_in_again(
    settings, fault_producer, model, consumers, rng, name_tag, tmp_path
):
    """Redis comes back holding less than it acknowledged: a restart from an RDB snapshot after a crash,
    a replica promoted before it caught up, a backup restored. The pointer (and its epoch) survived, so
    nothing looks wiped; only the positions going back say what was lost, and the consumer must read
    that span again, whether it is idle at the time or busy.

    The server persists only when the test says SAVE (no AOF): the snapshot is the state it restarts to.
    """
    server = PrivateRedis(tmp_path, persist=False)
    server.start()
    try:
        settings = replace(settings, redis_url=f"redis://127.0.0.1:{server.port}/0")
        store = projection_store(settings, Role.ADMIN)
        consumer = consumers(UMS_REDIS_URL=settings.redis_url).start()
        # Three parts, each newer than the last (base_ms), the second and third with users the
        # first lacks: what a restore loses shows as both stale and missing users.
        parts = [
            random_events(rng, users=users, count=3 * users, tag=name_tag, base_ms=base)
            for users, base in ((1500, 1_700_000_000_000), (2500, 1_710_000_000_000), (3000, 1_720_000_000_000))
        ]
        produce(fault_producer, settings.topic, parts[0], model)
        wait_whole(store, model, 60, "the first part")
        assert store.client.save()  # the state the crash goes back to
        produce(fault_producer, settings.topic, parts[1], model)
        wait_whole(store, model, 60, "the second part")

        # Idle: nothing more arrives, so no batch's save can notice; the once-a-second check must.
        # The consumer is paused across the crash (well inside the 6 s session timeout: no
        # rebalance, whose assignment would read the positions anyway) so the rig can show the loss.
        consumer.signal(signal.SIGSTOP)
        try:
            server.crash()
            server.start()
            lost = compare(model.view(), live_snapshot(store))
        finally:
            consumer.signal(signal.SIGCONT)
        assert lost.missing >= 1000 and lost.stale >= 1000, f"the restart lost nothing: the rig tested nothing ({lost})"
        idle_s = wait_whole(store, model, 60, "the projection after an idle restart")

        # Busy: a crash back to a snapshot taken mid-stream, while the stream goes on.
        producer = produce_in_background(fault_producer, settings.topic, parts[2], model, per_second=len(parts[2]) / 12)
        wait_until(
            lambda: model.produced > len(parts[0]) + len(parts[1]) + len(parts[2]) // 4, 30, "a quarter of part 3"
        )
        assert store.client.save()
        wait_until(lambda: model.produced > len(parts[0]) + len(parts[1]) + len(parts[2]) // 2, 30, "half of part 3")
        server.crash()
        server.start()
        producer.join()
        assert model.failed == 0
        busy_s = wait_whole(store, model, 90, "the projection after a restart mid-stream")
        went_back = [r for r in consumer.records() if r.get("message", "").startswith("Redis lost writes")]
        assigned = sum(r.get("message") == "partitions assigned" for r in consumer.records())
        print(
            f"redis restarted from older snapshots: events={model.produced} lost at the idle restart "
            f"missing={lost.missing} stale={lost.stale}; whole again after {idle_s:.1f} s (idle) and "
            f"{busy_s:.1f} s (after the stream); rewinds logged={len(went_back)} assignments={assigned}"
        )
        assert len(went_back) >= 2, "each restart must be noticed as lost writes"
        assert consumer.alive()
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


def test_a_rebuild_across_a_redis_rollback_never_flips_what_it_lost(
    settings, fault_producer, model, consumers, rng, name_tag, tmp_path
):
    """A replay writes its generation for seconds; Redis crashes and comes back from a snapshot taken
    mid-rebuild, claim and all. The replay's own writes since the snapshot are gone and it keeps no
    positions in Redis to notice it by: it must not flip that generation live. The live one is
    filled in again by the consumer, and a new replay then rebuilds it whole."""
    server = PrivateRedis(tmp_path, persist=False)
    server.start()
    try:
        settings = replace(settings, redis_url=f"redis://127.0.0.1:{server.port}/0")
        store = projection_store(settings, Role.ADMIN)
        generations = Generations(store)
        consumers(UMS_REDIS_URL=settings.redis_url).start()
        produce(fault_producer, settings.topic, random_events(rng, users=40_000, count=40_000, tag=name_tag), model)
        wait_whole(store, model, 60, "the projection before the rebuild")
        # Paced (8 s for 40,000 users, one event each, so keys count progress; it writes 10,000 a
        # batch) so the snapshot and the crash land between batches of one rebuild.
        replay = ReplayProcess(settings, tmp_path, UMS_REBUILD_EVENTS_PER_S="5000").start()
        wait_until(lambda: (generations.read() or Pointer(0, "")).building is not None, 30, "the replay's claim")
        target = generations.read().building

        def built() -> int:
            return sum(1 for _ in store.client.scan_iter(match=store.key(target, "*"), count=1000))

        wait_until(lambda: built() >= 10_000, 30, "the replay's first writes")
        assert store.client.save()
        at_save = built()
        wait_until(lambda: built() >= at_save + 10_000, 30, "the replay to write on past the snapshot")
        assert (generations.read() or Pointer(0, "")).building == target, "the rebuild ended first: nothing tested"
        server.crash()
        server.start()
        code = replay.wait(120)
        pointer = generations.read()
        print(f"replay across a rollback: exit {code}, live generation {pointer and pointer.live}, target {target}")
        assert pointer is not None and pointer.live != target, (
            f"the replay flipped a generation that lost writes:\n{replay.text()[-2000:]}"
        )
        assert code != 0
        wait_whole(store, model, 60, "the live projection after the rollback")
        assert run_replay(settings).returncode == 0
        wait_whole(store, model, 60, "the projection rebuilt after the rollback")
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()
