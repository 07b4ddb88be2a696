"""A rebuild's partitions split across worker processes, each running consumer/replay_kafka.py's loop.

Splitting is safe for the projection because the fenced script keeps the newer version per
user whatever order writes arrive in (domain/projection.py): two workers writing one user's
events from two partitions converge as one would. It pays because decoding is Python and
holds the GIL: one process uses one core, whatever its threads do (docs/decisions.md
"Replay workers").
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from adapters import logs
from adapters.clients import Role, projection_store
from adapters.diagnose import OutOfMemoryError
from adapters.generations import ClaimLost, Generations
from adapters.settings import Settings
from consumer.decode import Envelope, PoisonEvent
from consumer.governor import governor
from consumer.orphans import die_with
from consumer.pace import Pace, keyed_rate
from consumer.replay_kafka import EventsDeleted, Interrupted, OnPoison, PartitionReplay, Partitions
from consumer.tuning import tune_gc
from domain import use_collation

log = logging.getLogger(__name__)
# How often the parent looks at its claim, its workers and their progress.
POLL_S = 0.2
CLAIM_LOST_EXIT = 3  # a worker's exit status when the claim on its generation is gone
INTERRUPTED_EXIT = 4  # ... when its parent stopped it (no traceback: not a crash)
REDIS_FULL_EXIT = 5  # ... when Redis refused its writes for want of memory (its log says how full)
EVENTS_DELETED_EXIT = 6  # ... when the broker no longer had offsets it was to read (its log says which)


def split(partitions: Partitions, workers: int) -> list[Partitions]:
    """At most `workers` groups of partitions with work, about equal in events (largest first, to the lightest)."""
    busy = sorted(((end - low, p) for p, (low, end) in partitions.items() if end > low), reverse=True)
    groups: list[tuple[int, Partitions]] = [(0, {}) for _ in range(min(workers, len(busy)))]
    for events, p in busy:
        lightest = min(range(len(groups)), key=lambda i: groups[i][0])
        load, members = groups[lightest]
        members[p] = partitions[p]
        groups[lightest] = (load + events, members)
    return [members for _, members in groups]


def in_processes(
    settings: Settings,
    target: int,
    groups: list[Partitions],
    check: Callable[[], None],
    progress: Callable[[int], None],
    on_poison: OnPoison | None = None,
    probe: Any = None,
    kafka_only: bool = True,
) -> int:
    """Replay each group in a process of its own; the caller keeps the claim (`check` raises to stop them all);
    `probe`: the rebuild's probe windows (consumer/governor.py), shared by every worker's governor.

    Spawned, not forked: the parent holds threads (the lease's) and librdkafka state that a
    fork would copy half-made. Each worker builds its own clients from `settings`.
    """
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    poison_queue: multiprocessing.Queue[tuple[Envelope, str, str]] = ctx.Queue()
    counters = [ctx.Value("q", 0) for _ in groups]
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                settings,
                target,
                group,
                len(groups),
                stop,
                counter,
                poison_queue,
                logs.chosen(),
                os.getpid(),
                probe,
                kafka_only,
            ),
            name=f"replay-{i}",
            daemon=True,
        )
        for i, (group, counter) in enumerate(zip(groups, counters, strict=True))
    ]
    poison, reported = 0, 0
    try:
        for proc in procs:
            proc.start()
        while True:
            check()
            poison += _drain(poison_queue, on_poison)
            done = sum(int(c.value) for c in counters)
            progress(done - reported)
            reported = done
            running = [p.sentinel for p in procs if p.exitcode is None]
            # One worker failed: the rebuild cannot flip, so the others stop now (finally, below).
            if not running or any(p.exitcode not in (None, 0) for p in procs):
                break
            multiprocessing.connection.wait(running, timeout=POLL_S)
        poison += _drain(poison_queue, on_poison)
        if any(p.exitcode == REDIS_FULL_EXIT for p in procs):
            raise OutOfMemoryError("a replay worker's writes were refused: Redis is full")
        if any(p.exitcode == EVENTS_DELETED_EXIT for p in procs):
            raise EventsDeleted("a replay worker met offsets no longer in the topic (its log says which): no flip")
        if any(p.exitcode == CLAIM_LOST_EXIT for p in procs):
            raise ClaimLost(f"generation {target} lost its claim or writes (the workers' log says which): no flip")
        failed = [f"{p.name} exited {p.exitcode}" for p in procs if p.exitcode not in (None, 0)]
        if failed:
            raise RuntimeError(f"replay workers failed: {', '.join(failed)}")
    finally:
        stop.set()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return poison


def _drain(poison_queue: multiprocessing.Queue[tuple[Envelope, str, str]], on_poison: OnPoison | None) -> int:
    count = 0
    while True:
        try:
            message, code, text = poison_queue.get_nowait()
        except queue.Empty:
            return count
        count += 1
        if on_poison is not None:
            on_poison(message, PoisonEvent(code, text))


def _worker(
    settings: Settings,
    target: int,
    partitions: Partitions,
    workers: int,
    stop: Any,
    counter: Synchronized[int],
    poison_queue: multiprocessing.Queue[tuple[Envelope, str, str]],
    log_choice: tuple[str, bool],
    parent: int,
    probe: Any,
    kafka_only: bool,
) -> None:
    """A worker process's entry point: the same process-wide set-up as `ums-find`, then its partitions."""
    die_with(parent)
    # Ctrl-C reaches the whole process group: the parent handles it and stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(*log_choice)
    use_collation(settings.name_collation)
    tune_gc()  # niceness is inherited from the parent
    store = projection_store(settings, Role.ADMIN)
    generations = Generations(store)

    def check() -> None:
        # The parent holds the lease, but a parent stopped (SIGSTOP) or gone cannot tell its
        # workers: each one also stops once the claim on its generation is gone.
        if stop.is_set() or os.getppid() != parent:
            raise Interrupted("the rebuild stopped")
        pointer = generations.read()
        if pointer is None or pointer.building != target:
            raise ClaimLost(f"generation {target} is no longer claimed: this worker stops writing to it")

    def progress(n: int) -> None:
        counter.value += n  # only this process writes it

    def on_poison(message: Envelope, bad: PoisonEvent) -> None:
        poison_queue.put((message, bad.code, str(bad)))

    # stop.wait: the parent's SIGTERM ends a worker's sleep at once, as it does the parent's.
    rate = keyed_rate(generations, target, share=workers)
    limit = governor(settings, probe, 1 / workers)  # each worker decides its own limit, as TCP flows share a link
    pace = Pace(settings.rebuild_events_per_s / workers, sleep=stop.wait, source=rate, governor=limit)
    try:
        PartitionReplay(settings, store, target, partitions, check, progress, on_poison, pace, kafka_only).run()
    except EventsDeleted as deleted:
        log.error("%s", deleted)
        sys.exit(EVENTS_DELETED_EXIT)
    except ClaimLost as lost:
        log.warning("%s", lost)
        sys.exit(CLAIM_LOST_EXIT)
    except Interrupted:
        sys.exit(INTERRUPTED_EXIT)  # the parent stopped the rebuild and says why
    except OutOfMemoryError as full:
        log.error("%s", full)
        sys.exit(REDIS_FULL_EXIT)
