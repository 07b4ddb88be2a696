"""Read API benchmarks with wrk: ours (hits, fallback, 404s), the fixed-body ceiling, the seed design; rebuild."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import requests

from adapters.mysql import MySQLUsers, make_pool
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis
from bench.common import (
    BIN,
    LOAD_CPUS,
    PINNING,
    PORT_BASE,
    QUICK,
    ROOT,
    children,
    cpu_seconds,
    env_for,
    pinned,
    wait_for,
)
from bench.loadgen import write_targets
from bench.openloop import Series, open_loop_suite
from bench.overload import overload_suite
from bench.projection import bench_name
from bench.readers import Reader
from bench.rig_floor import floor_or_none
from bench.servers import Server, gunicorn, seed_server
from domain import Name, PhoneNumber, User

log = logging.getLogger("bench")
LUA = ROOT / "bench" / "random_names.lua"
DURATION = "3s" if QUICK else "6s"
REBUILD_LOG = ROOT / ".run" / "bench" / "rebuild.log"  # the last run's, quick or full: a log, not a result
WRK_THREADS = 1 if PINNING else 2  # pinned: wrk has one core


@dataclass
class Wrk:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> Wrk:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)\s*$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)\s*$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Wrk(rps, p50, p99, errors, total)


def wrk(base: str, names: Path, duration: str = DURATION) -> Wrk:
    out = subprocess.run(
        pinned(["wrk", f"-t{WRK_THREADS}", "-c32", f"-d{duration}", "--latency", "-s", str(LUA), base], LOAD_CPUS),
        capture_output=True,
        text=True,
        check=True,
        env={"BENCH_NAMES": str(names)},
    ).stdout
    return parse_wrk(out)


def write_names(path: Path, names: list[str]) -> Path:
    path.write_text("\n".join(urllib.parse.quote(n) for n in names) + "\n")
    return path


def worker_balance(server: Server, run) -> tuple[Wrk, list[float]]:  # type: ignore[no-untyped-def]
    """Run wrk and return each gunicorn worker's share of the CPU the workers used."""
    workers = children(server.proc.pid)
    before = {w: cpu_seconds(w) for w in workers}
    result = run()
    used = [cpu_seconds(w) - before[w] for w in workers if Path(f"/proc/{w}").exists()]
    total = sum(used) or 1.0
    return result, [round(u / total, 3) for u in used]


def seed_mysql(settings: Settings, count: int) -> MySQLUsers:
    users = MySQLUsers(make_pool(replace(settings, mysql_read_timeout_s=60.0), writer=True))
    since = datetime(2023, 1, 1, tzinfo=UTC)
    for start in range(0, count, 5000):
        users.upsert_many(
            User(Name(bench_name(i)), PhoneNumber(9_000_000_000 + i), since)
            for i in range(start, min(start + 5000, count))
        )
    return users


def clean_mysql(users: MySQLUsers) -> None:
    with users.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM ums_users WHERE name LIKE 'Bench User %%'")


def api_suite(settings: Settings, projected: int, rounds: int, workdir: Path) -> dict[str, object]:
    mysql_rows = min(projected, 100_000)
    writer = seed_mysql(settings, mysql_rows)
    pick = random.Random(7)
    hit_names = [bench_name(pick.randrange(projected)) for _ in range(20000)]
    sql_names = [bench_name(pick.randrange(mysql_rows)) for _ in range(20000)]
    unknown_names = [f"Nobody Here {pick.randrange(10**9):09d}" for _ in range(20000)]
    hits = write_names(workdir / "hits.txt", hit_names)
    in_sql = write_names(workdir / "mysql.txt", sql_names)
    unknown = write_names(workdir / "unknown.txt", unknown_names)
    ours = gunicorn(settings, PORT_BASE)  # as shipped, admission control on: open loop, overload
    # Closed loop (wrk -c32 on one core is a standing queue) measures serving cost, not shedding:
    # admission control off, like the ceiling, which has none (bench/README.md).
    unshed = replace(settings, api_queue_target_ms=0.0, api_request_deadline_ms=0.0)
    closed = gunicorn(unshed, PORT_BASE + 5)
    fallback = gunicorn(replace(unshed, key_prefix="bench-empty"), PORT_BASE + 1)  # no projection: MySQL answers
    # The open-loop fallback series meets the fallback as shipped, admission control on. Until 2026-12-04 it
    # met the unshed one above, whose 2,000 req/s queued for seconds (p50 1.7 s): not what a user runs.
    fallback_on = gunicorn(replace(settings, key_prefix="bench-empty"), PORT_BASE + 6)
    ceiling = gunicorn(settings, PORT_BASE + 2, "bench.peers.ceiling_app:create_app()")
    seed = seed_server(settings, PORT_BASE + 3)
    runs: dict[str, list[Wrk]] = {"ours": [], "ceiling": [], "seed": [], "fallback": [], "not_found": []}
    balance: list[list[float]] = []
    try:
        assert requests.get(f"{ours.base}/user/{bench_name(1)}", timeout=5).status_code == 200
        assert requests.get(f"{closed.base}/user/{bench_name(1)}", timeout=5).status_code == 200
        assert requests.get(f"{seed.base}/user/{bench_name(1)}", timeout=5).status_code == 200
        for r in range(rounds):
            log.info("closed-loop (wrk) round %d of %d", r + 1, rounds)
            result, shares = worker_balance(closed, lambda: wrk(closed.base, hits))
            runs["ours"].append(result)
            balance.append(shares)
            runs["ceiling"].append(wrk(ceiling.base, hits))
            runs["seed"].append(wrk(seed.base, in_sql))
            seed.settle()
            runs["fallback"].append(wrk(fallback.base, in_sql))
            runs["not_found"].append(wrk(closed.base, unknown))
            log.info("round %d: %s", r + 1, {k: round(v[-1].rps) for k, v in runs.items()})
        series = [
            Series("ours", ours, write_targets(workdir / "t-hits", ours.base, hit_names), 200, capacity=True),
            Series("ceiling", ceiling, write_targets(workdir / "t-ceil", ceiling.base, hit_names), 200, capacity=True),
            Series("seed", seed, write_targets(workdir / "t-seed", seed.base, sql_names), 200, capacity=True),
            Series("fallback", fallback_on, write_targets(workdir / "t-fb", fallback_on.base, sql_names), 200, False),
            Series("unknown", ours, write_targets(workdir / "t-unk", ours.base, unknown_names), 404, False),
        ]
        open_loop = open_loop_suite(series, rounds, workdir)
        capacities = cast(dict[str, dict[str, float]], open_loop["capacity"])
        overload = overload_suite(series[:3], capacities["ours"]["median"], workdir)
        overload["floor"] = floor_or_none(cast(int, overload["capacity_rps"]), workdir)
        # wrk counts every 503 as a failed read: the rebuild is read through the unshed server.
        rebuild = rebuild_under_reads(settings, closed, hits)
    finally:
        for server in (ours, closed, fallback, fallback_on, ceiling, seed):
            server.stop()
        clean_mysql(writer)
    return {"runs": runs, "balance": balance, "rebuild": rebuild, "open_loop": open_loop, "overload": overload}


def rebuild_under_reads(settings: Settings, ours: Server, hits: Path) -> dict[str, float]:
    """`ums-find replay` of the whole topic while an open-loop reader (vegeta, 500 req/s) reads existing users.

    Open loop, not wrk's 32 closed-loop connections: those keep a standing queue on one core,
    which the API now sheds (503), so they counted admission control as failed reads.
    """
    names = [urllib.parse.unquote(line) for line in hits.read_text().split()]
    reader = Reader(ours.base, names, hits.parent)
    try:
        time.sleep(1.0)  # let the load settle before the rebuild starts
        store = ProjectionStore(make_redis(settings, timeout_s=10), settings.key_prefix)
        before = store.live_generation()
        REBUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
        started, wall_start = time.monotonic(), time.time()
        with REBUILD_LOG.open("w") as out:  # the governor's every window, for a rebuild slower than the last run's
            replay = subprocess.Popen(
                [str(BIN / "ums-find"), "--log-text", "replay"],
                env=env_for(settings, UMS_LOG_LEVEL="DEBUG"),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # as a supervisor starts it (ums_find/priority.py)
            )
        # The rebuild is done when the new generation serves reads; deleting the old one follows.
        wait_for(lambda: store.live_generation() != before, 900, "the flip", interval=0.05)
        flipped = time.monotonic() - started
        assert replay.wait(900) == 0, "replay failed"
        seconds = time.monotonic() - started
        wall_end = time.time()
    finally:
        reader.stop()
    reads = reader.window(wall_start, wall_end)
    return {
        "seconds": flipped,
        "with_cleanup_seconds": seconds,
        "failed_reads": reads.failed,
        "reads": reads.requests,
        "rps": reads.requests / seconds,
        "p99_ms": reads.p99_ms,
        "max_ms": reads.max_ms,
    }
