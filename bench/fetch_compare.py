"""Throughput of the consumer's fetch before issue 15 (wait for a full batch or 50 ms) and now (wait
for the first message only, then take what is already fetched): the same events, alternating.

Each run starts the consumer on a fresh group and an empty Redis database and stops when every
user is in the projection; "steady" leaves out the start (process start, the group join with
Kafka's 3 s rebalance delay) by timing from the first 1,000 users on.

python -m bench.fetch_compare TOPIC [USERS]   (TOPIC: one of make bench's bench-events-* topics)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from adapters.store import make_redis
from bench.common import ROOT, bench_settings, env_for, median
from bench.freshness import VARIANTS
from bench.projection import flush

ROUNDS = 3


def run(topic: str, variant: str, users: int) -> dict[str, float]:
    settings = bench_settings(topic=topic, key_prefix="bench", group_id=f"bench-fetch-{uuid.uuid4().hex[:6]}")
    flush(settings)
    client = make_redis(settings, timeout_s=10)
    started = time.monotonic()
    env = env_for(settings, UMS_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(VARIANTS[variant], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    try:
        while (size := client.dbsize()) < users + 1:  # every user, and the generation pointer
            if first is None and size > 1000:
                first = time.monotonic()
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)
    end = time.monotonic()
    return {"eps": users / (end - started), "steady_eps": (users - 1000) / (end - (first or started))}


def main(topic: str, users: int = 1_000_000) -> None:
    got: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(ROUNDS):
        for variant in VARIANTS:
            got[variant].append(run(topic, variant, users))
            print(variant, got[variant][-1], flush=True)
    summary = {
        v: {k: median([r[k] for r in runs]) for k in ("eps", "steady_eps")} | {"rounds": runs}
        for v, runs in got.items()
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
