"""A growth run's Redis: the settings it changes and restores, memory, latency events, end-state checks."""

from __future__ import annotations

import logging
import random

import redis

from adapters.settings import Settings
from bench import growth_phases as phases
from bench.projection import bench_name
from domain import Name

log = logging.getLogger("bench")
# Redis's latency monitor is off by default (0). 2 ms: any single command that could take a good
# part of the readers' 5 ms budget on its own is recorded.
LATENCY_THRESHOLD_MS = 2
# Two generations live during a rebuild, at ~170 B per user each (README), with headroom.
REDIS_BYTES_PER_USER_BOUND = 500


class RedisRun:
    """The Redis settings a run changes (and restores), memory and latency events."""

    def __init__(self, client: redis.Redis, users: int) -> None:
        self.client = client
        self.saved = {k: client.config_get(k)[k] for k in ("latency-monitor-threshold", "maxmemory")}
        client.config_set("latency-monitor-threshold", LATENCY_THRESHOLD_MS)
        wanted = users * REDIS_BYTES_PER_USER_BOUND + 512 * 2**20
        current = int(self.saved["maxmemory"])
        if current and current < wanted:  # a 2 GB cap cannot hold two 10M generations
            client.config_set("maxmemory", wanted)
            log.info("Redis maxmemory %d -> %d for this run", current, wanted)

    def restore(self) -> None:
        for key, value in self.saved.items():
            self.client.config_set(key, value)

    def used(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def reset_latency(self) -> None:
        self.client.execute_command("LATENCY", "RESET")

    def latency(self) -> dict[str, dict[str, float]]:
        """Per event since the last reset: samples (one per second with a spike, 160 kept) and max ms."""
        events: dict[str, dict[str, float]] = {}
        for row in self.client.execute_command("LATENCY", "LATEST"):
            name = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
            history = self.client.execute_command("LATENCY", "HISTORY", name)
            events[name] = {"samples": len(history), "max_ms": int(row[3])}
        return events


def check_projection(settings: Settings, users: int, seed: int) -> None:
    """A sample of users holds the end state the history leads to (growth_data's docstring)."""
    store = phases.store_for(settings)
    live = store.live_generation()
    assert live is not None
    for u in random.Random(seed).sample(range(users), min(users, 200)):
        held = store.get(Name(bench_name(u)).canonical, live)
        if held is None or held.user is None or held.user.phone.value != 9_100_000_000 + u:
            raise AssertionError(f"user {u}: the projection holds {held}, not its last update")


def sampled_bytes_per_user(settings: Settings, users: int, seed: int) -> float:
    """MEMORY USAGE of 1,000 users' keys, averaged: a cross-check of the used_memory delta that
    other databases on a shared Redis cannot move (it leaves out the keyspace's hash table)."""
    store = phases.store_for(settings)
    live = store.live_generation()
    pipe = store.client.pipeline(transaction=False)
    picked = random.Random(seed + 1).sample(range(users), min(users, 1000))
    for u in picked:
        pipe.memory_usage(store.key(live or 0, Name(bench_name(u)).canonical), samples=0)
    sizes = [int(s or 0) for s in pipe.execute()]
    return round(sum(sizes) / len(sizes), 1)
