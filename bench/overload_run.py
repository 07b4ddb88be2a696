"""The overload curve alone (`python -m bench.overload_run`, stack environment loaded): a harness check.

Projects USERS users under a key prefix of its own (Redis bench database), writes them to MySQL
for the seed, starts ours, the ceiling and the seed as `make bench` does, measures our capacity
with one open-loop ladder (or takes BENCH_OVERLOAD_CAPACITY), runs bench.overload and writes the
results into bench/results/overload-run/ (BENCH_QUICK=1: results/quick/overload-run/); never
latest.* nor the README, which only a full `make bench` rewrites.
Everything it wrote is deleted at the end.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from adapters.generations import Generations
from adapters.mysql import MySQLUsers, make_pool
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis
from bench.common import PORT_BASE, QUICK, RESULTS, bench_settings, machine
from bench.loadgen import write_targets
from bench.openloop import Series, capacity, run_series
from bench.overload import overload_suite
from bench.overload_report import overload_chart, overload_keys, overload_table
from bench.rig_floor import floor_or_none
from bench.servers import gunicorn, seed_server
from domain import Name, PhoneNumber, User, UserAdded, Version

log = logging.getLogger("bench")
USERS = 2000


def users(run: str) -> list[User]:
    since = datetime(2023, 1, 1, tzinfo=UTC)
    return [User(Name(f"Overload {run} {i:05d}"), PhoneNumber(9_000_000_000 + i), since) for i in range(USERS)]


def projected(run: str, tag: str) -> tuple[Settings, list[User]]:
    """Bench settings under key prefix `tag`, and this run's USERS users projected into its live generation."""
    settings = bench_settings(key_prefix=tag)
    people = users(run)
    store = ProjectionStore(make_redis(settings, timeout_s=10), tag)
    pointer, _ = Generations(store).ensure()
    store.apply([UserAdded(u, Version(u.since_ms, 0, i)) for i, u in enumerate(people)], pointer.live)
    return settings, people


def forget(settings: Settings, tag: str) -> None:
    """Delete every key under `tag` (users and control keys)."""
    client = make_redis(settings, timeout_s=10)
    for pattern in (f"{tag}:*", f"{{{tag}}}:*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_at_start = os.getloadavg()
    run = uuid.uuid4().hex[:6]
    tag = f"bench-ovl-{run}"
    settings, people = projected(run, tag)
    mysql = MySQLUsers(make_pool(replace(settings, mysql_read_timeout_s=60.0), writer=True))
    mysql.upsert_many(people)
    names = [u.name.value for u in people]
    servers = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            ours = gunicorn(settings, PORT_BASE)
            servers.append(ours)
            ceiling = gunicorn(settings, PORT_BASE + 2, "bench.peers.ceiling_app:create_app()")
            servers.append(ceiling)
            seed = seed_server(settings, PORT_BASE + 3)
            servers.append(seed)
            series = [
                Series(name, server, write_targets(workdir / f"t-{name}", server.base, names), 200, capacity=True)
                for name, server in (("ours", ours), ("ceiling", ceiling), ("seed", seed))
            ]
            given = os.environ.get("BENCH_OVERLOAD_CAPACITY")
            ours_capacity = float(given) if given else float(capacity(run_series(series[0], workdir)))
            log.info("our capacity at the SLO: %s req/s (%s)", ours_capacity, "given" if given else "measured")
            overload = overload_suite(series, ours_capacity, workdir)
            overload["floor"] = floor_or_none(overload["capacity_rps"], workdir)
    finally:
        for server in servers:
            server.stop()
        with mysql.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ums_users WHERE name LIKE %s", (f"Overload {run} %",))
        forget(settings, tag)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "scale": 0.0,
        "events": USERS,
        "rounds": 1,
        "load_average_start": load_at_start,
        "load_average_end": os.getloadavg(),
        "api_capacity_at_p99_10ms_rps": ours_capacity,
        **overload_keys(overload),
    }
    # A run of one part: its own directory, never latest.* nor the README (those are make bench's).
    target = RESULTS / ("quick" if QUICK else "") / "overload-run"
    target.mkdir(parents=True, exist_ok=True)
    (target / "overload.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (target / "overload.md").write_text(overload_table(results))
    overload_chart(results, target / "overload.png")
    print(overload_table(results))


if __name__ == "__main__":
    main()
