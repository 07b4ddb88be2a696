"""A growth run's Redis: the settings it changes and restores, memory, latency events, end-state checks."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import redis

from adapters.settings import Settings
from bench import growth_phases as phases
from bench.projection import bench_name
from domain import Name

log = logging.getLogger("bench")
# Redis's latency monitor is off by default (0). 2 ms: any single command that could take a good
# part of the readers' 5 ms budget on its own is recorded.
LATENCY_THRESHOLD_MS = 2
# The latency monitor says when a command was slow, not which one: the slow log does (its default
# threshold is 10 ms and it keeps 128). Same 2 ms here, and room for a 10M rebuild's worth.
SLOWLOG_KEPT = 1024
SLOW_SHOWN = 5
# Two generations live during a rebuild, at ~170 B per user each (README), with headroom.
REDIS_BYTES_PER_USER_BOUND = 500


class RedisRun:
    """The Redis settings a run changes (and restores), memory and latency events."""

    def __init__(self, client: redis.Redis, users: int) -> None:
        self.client = client
        names = ("latency-monitor-threshold", "maxmemory", "slowlog-log-slower-than", "slowlog-max-len")
        self.saved = {k: client.config_get(k)[k] for k in names}
        client.config_set("latency-monitor-threshold", LATENCY_THRESHOLD_MS)
        client.config_set("slowlog-log-slower-than", LATENCY_THRESHOLD_MS * 1000)  # microseconds
        client.config_set("slowlog-max-len", SLOWLOG_KEPT)
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
        self.client.slowlog_reset()

    def latency(self) -> dict[str, Any]:
        """Per event since the last reset: samples (one per second with a spike, 160 kept) and max ms;
        under `slow_commands`, the slow log's commands over the threshold by name: count and max ms."""
        events: dict[str, Any] = {}
        for row in self.client.execute_command("LATENCY", "LATEST"):
            name = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
            history = self.client.execute_command("LATENCY", "HISTORY", name)
            events[name] = {"samples": len(history), "max_ms": int(row[3])}
        events["slow_commands"] = slow_commands(self.client.slowlog_get(SLOWLOG_KEPT))
        return events


def slow_commands(entries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The slow log by command name (EVALSHA and the like by name only): count and max ms; the
    slowest few logged with their time, so a stall can be set against what else ran then."""
    by_name: dict[str, dict[str, float]] = {}
    for entry in entries:
        command = entry["command"]
        text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
        name = text.split(" ", 1)[0].upper()
        seen = by_name.setdefault(name, {"count": 0, "max_ms": 0.0})
        seen["count"] += 1
        seen["max_ms"] = max(seen["max_ms"], round(entry["duration"] / 1000, 2))
    for entry in sorted(entries, key=lambda e: -e["duration"])[:SLOW_SHOWN]:
        log.info("  slow log: %.1f ms at %s: %.60r", entry["duration"] / 1000,
                 time.strftime("%H:%M:%S", time.gmtime(entry["start_time"])), entry["command"])  # fmt: skip
    return by_name


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
