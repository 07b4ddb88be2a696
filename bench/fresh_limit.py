"""How many forced reads per worker should wait on MySQL at once (UMS_FRESH_READ_LIMIT)?

`python -m bench.fresh_limit` (the stack's environment loaded): MariaDB's answer time for the
fallback query through the API's pool, then, for each limit, one gunicorn worker (4 threads)
flooded by wrk with `Cache-Control: no-cache` reads of a user that only MySQL holds: forced
reads answered from MySQL per second, and the share turned away (503). Figures in
docs/decisions.md "Read your own writes".
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote

from adapters.clients import mysql_users
from api.serialize import iso
from bench.common import PORT_BASE, bench_settings, percentile
from bench.servers import gunicorn
from domain import Name, PhoneNumber, User, use_collation

# (UMS_FRESH_READ_LIMIT, UMS_FRESH_READ_WAIT_S)
LIMITS = ((1, 0.0), (2, 0.0), (2, 0.01), (4, 0.0))
CONNECTIONS = (2, 4, 16)  # two clients, a burst as wide as the worker's threads, a flood
ROUNDS = 2


def answer_times(users, name: Name, threads: int, count: int = 2000) -> list[float]:
    """Seconds per MySQLUsers.find, from `threads` threads sharing one pool."""
    times: list[float] = []

    def run() -> None:
        for _ in range(count // threads):
            started = time.perf_counter()
            users.find(name)
            times.append(time.perf_counter() - started)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(times)


def flood(base: str, path: str, connections: int) -> tuple[float, float]:
    """wrk, closed loop, 4 s of forced reads: (requests/s, share of non-2xx answers)."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d4s", "-H", "Cache-Control: no-cache", base + path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, (int(failed.group(1)) if failed else 0) / max(total, 1)


def main() -> None:
    settings = bench_settings(api_workers=1, api_threads=4, key_prefix=f"bfl{uuid.uuid4().hex[:6]}")
    use_collation(settings.name_collation)
    writer = mysql_users(settings, writer=True)
    name = Name(f"bench fresh {uuid.uuid4().hex[:6]}")
    writer.upsert_many([User(name, PhoneNumber(9_000_000_001), datetime.now(UTC))])
    try:
        reader = mysql_users(settings)
        for threads in (1, 4):
            times = answer_times(reader, name, threads)
            print(
                f"MariaDB answer, {threads} thread(s): p50 {percentile(times, 50) * 1e3:.2f} ms, "
                f"p99 {percentile(times, 99) * 1e3:.2f} ms"
            )
        for limit, wait_s in LIMITS:
            server = gunicorn(replace(settings, fresh_read_limit=limit, fresh_read_wait_s=wait_s), PORT_BASE + 7)
            try:
                for connections in CONNECTIONS:
                    results = [flood(server.base, f"/user/{quote(name.value)}", connections) for _ in range(ROUNDS)]
                    served = sorted(rate * (1 - limited) for rate, limited in results)
                    shares = sorted(limited for _, limited in results)
                    print(
                        f"limit {limit}, wait {wait_s * 1000:.0f} ms, {connections} connections: answered from MySQL "
                        f"{served[0]:.0f}-{served[-1]:.0f}/s, turned away {shares[0]:.0%}-{shares[-1]:.0%} "
                        f"({iso(datetime.now(UTC))})"
                    )
            finally:
                server.stop()
    finally:
        with writer.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ums_users WHERE name = %s", (name.value,))


if __name__ == "__main__":
    main()
