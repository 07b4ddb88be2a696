"""Readers through short Redis stalls (`python -m bench.stalls`, stack environment loaded).

usage: python -m bench.stalls [ROUNDS] [NAME=VAR=VALUE,VAR=VALUE ...]

The growth run of 2026-12-05 failed 24 reads at 3M users and 32 at 10M, every one a 503 shed on
arrival by an API at a quarter of its capacity, within a second of a rebuild's 50-100 ms Redis
command. This asks whether a stall alone does that: our API (gunicorn as `make bench` pins it)
is read at RATE req/s open loop (the growth run's readers) while, every PERIOD_S, a Lua script
holds Redis busy for D ms (a long command, as a rebuild's chunk or a big UNLINK can be), STALLS
times for each D in STALLS_MS, after a stretch with no stall. Per D: the reads' p99 and max and
their status codes; any 503 is a read the stall alone cost. Each variant (UMS_* variables, as
bench/admission_ab.py takes them; none: the defaults) gets a fresh API per round, in alternating
order. Writes .run/stalls.json; never bench/results (a run of one part).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import redis

from adapters.store import make_redis
from bench.admission_ab import alternating, projected_names, variants, write_run
from bench.common import BIN, PORT_BASE
from bench.overload import drain
from bench.readers import RATE, Reader
from bench.servers import Server

log = logging.getLogger("bench")
STALLS_MS = (0, 25, 50, 75, 100, 150, 250)
STALLS = 10  # stalls per length
PERIOD_S = 1.0  # between two stalls' starts: long enough for the queue a stall leaves to drain
# Busy for ARGV[1] microseconds by Redis's own clock: nothing else runs on Redis meanwhile.
BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""


def stall_phases(client: redis.Redis) -> list[tuple[int, float, float]]:
    """Every stall length in turn: (length ms, start, end) of each phase, time.time() seconds."""
    busy = client.register_script(BUSY)
    phases = []
    for stall_ms in STALLS_MS:
        start = time.time()
        for i in range(STALLS):
            if stall_ms:
                busy(args=[stall_ms * 1000])
            # The stalls' own schedule, not a wait for an event: one every PERIOD_S.
            time.sleep(max(0.0, start + (i + 1) * PERIOD_S - time.time()))
        phases.append((stall_ms, start, time.time()))
    return phases


def run_variant(env: dict[str, str], names: list[str], client: redis.Redis, workdir: Path) -> dict[str, dict]:
    server = Server([str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"], env, PORT_BASE)
    reader = None
    try:
        drain(server.base + "/user/" + names[0].replace(" ", "%20"))
        reader = Reader(server.base, names, workdir, RATE)
        time.sleep(2.0)  # the reader's connections open before the first measured stretch
        phases = stall_phases(client)
    finally:
        if reader is not None:
            reader.stop()
        server.stop()
    return {str(ms): reader.window(start, end).as_dict() for ms, start, end in phases}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    chosen = variants(sys.argv[2:]) or {"defaults": {}}
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    with projected_names("bench-stall") as (settings, names), tempfile.TemporaryDirectory() as tmp:
        client = make_redis(settings, timeout_s=10)
        for r, name, env in alternating(settings, chosen, rounds):
            windows = run_variant(env, names, client, Path(tmp))
            results[name].append(windows)
            for ms, w in windows.items():
                log.info("round %d %s stall %s ms: p99 %.1f ms, max %.1f ms, failed %d %s", r, name, ms,
                         w["p99_ms"], w["max_ms"], w["failed"], w["codes"])  # fmt: skip
    write_run("stalls.json", {"rate": RATE, "stalls_ms": STALLS_MS, "variants": chosen, "rounds": results})


if __name__ == "__main__":
    main()
