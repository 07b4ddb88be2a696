"""16 readers of unknown names for 5 s against a running API with MySQL down (bench/mysql_outage.sh)."""

from __future__ import annotations

import sys
import threading
import time

import requests

from bench.growth_cpu import tree_cpu_s

READERS = 16
SECONDS = 5.0
URL = "http://127.0.0.1:18123/user/Nobody%20R{reader}x{i}"


def main(label: str, master: int) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    before = tree_cpu_s(master)
    end = time.monotonic() + SECONDS

    def read(reader: int) -> None:
        session, i = requests.Session(), 0
        while time.monotonic() < end:
            i += 1
            started = time.monotonic()
            status = session.get(URL.format(reader=reader, i=i), timeout=10).status_code
            with lock:
                latencies.append(time.monotonic() - started)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=read, args=(r,)) for r in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = tree_cpu_s(master) - before
    latencies.sort()
    n = len(latencies)
    print(
        f"{label}: {statuses} {n / SECONDS:.0f}/s p50 {latencies[n // 2] * 1000:.1f} ms "
        f"p99 {latencies[int(n * 0.99)] * 1000:.1f} ms API CPU {used * 1000 / n:.2f} ms/request"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
