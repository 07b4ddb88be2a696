"""The read cache against plain reads (`python -m bench.read_cache`, stack environment loaded; issue 22 item 4).

usage: python -m bench.read_cache [ROUNDS] [STEP_S] [ENTRIES]
USERS users are written straight into Redis (bench database, a key prefix of this run's own); our
API runs under gunicorn pinned as `make bench` pins it, once with UMS_API_READ_CACHE_ENTRIES=0 and
once with ENTRIES, variants alternating per round. Each is read open loop (vegeta on the other core,
1 s timeout) in two name mixes, uniform over every user and Zipf s=1 over them (ranks shuffled), at
RATES for STEP_S each after a warm-up at 500 req/s in the same mix; every step draws names afresh,
so no step reads a list an earlier one already read. Per step: p50/p99, errors, the API's CPU per
request (its processes' CPU over the step) and the cache's hit ratio (from /metrics). Capacity: the
highest rate held at p99 <= 10 ms without errors, every lower rate held too. Writes
.run/read-cache.json: a run of one part, never bench/results.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import requests

from adapters.generations import Generations
from adapters.store import ProjectionStore, make_redis
from bench.common import BIN, PORT_BASE, ROOT, bench_settings, children, env_for, median, rss_kb
from bench.loadgen import attack, write_targets
from bench.overload_run import forget
from bench.servers import Server
from domain import Name, PhoneNumber, User, UserAdded, Version

log = logging.getLogger("bench")
USERS = 200_000
RATES = (750, 1000, 1250, 1500, 1750, 2000)
SLO_MS = 10.0
HIT = re.compile(r'^ums_api_read_cache_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


def name_of(run: str, i: int) -> str:
    return f"Cache {run} {i:06d}"


def project(run: str, tag: str) -> Any:
    settings = bench_settings(key_prefix=tag)
    store = ProjectionStore(make_redis(settings, timeout_s=30), tag)
    pointer, _ = Generations(store).ensure()
    for start in range(0, USERS, 10_000):
        events = [
            UserAdded(
                User.at_epoch_ms(Name(name_of(run, i)), PhoneNumber(9_000_000_000 + i), 1_700_000_000_000),
                Version(1_700_000_000_000, 0, i),
            )
            for i in range(start, min(USERS, start + 10_000))
        ]
        store.apply(events, pointer.live)
    return settings


class Mix:
    """Names to read: uniform over every user, or Zipf s=1 over a shuffled ranking of them."""

    def __init__(self, kind: str, run: str, seed: int) -> None:
        self.kind, self.run = kind, run
        self.rng = random.Random(seed)
        ranking = list(range(USERS))
        self.rng.shuffle(ranking)
        self.ranking = ranking
        self.cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(USERS))) if kind == "zipf" else None

    def draw(self, n: int) -> list[str]:
        if self.cum is None:
            return [name_of(self.run, self.rng.randrange(USERS)) for _ in range(n)]
        return [name_of(self.run, u) for u in self.rng.choices(self.ranking, cum_weights=self.cum, k=n)]


def cache_counts(ops_base: str) -> dict[str, float]:
    text = requests.get(ops_base + "/metrics", timeout=5).text
    return {outcome: float(value) for outcome, value in HIT.findall(text)}


def run_variant(settings: Any, entries: int, mix: Mix, step_s: float, workdir: Path) -> list[dict[str, Any]]:
    port = PORT_BASE
    env = env_for(settings, UMS_API_BIND=f"127.0.0.1:{port}", UMS_API_ACCESS_LOG="/dev/null",
                  UMS_LOG_LEVEL="WARNING", UMS_API_READ_CACHE_ENTRIES=str(entries))  # fmt: skip
    server = Server([str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"], env, port)
    ops = f"http://127.0.0.1:{port + 1000}"
    steps = []
    try:
        attack(write_targets(workdir / "warm", server.base, mix.draw(10_000)), 500, 20.0, 200, workdir)
        server.quiesce()
        for rate in RATES:
            targets = write_targets(workdir / "targets", server.base, mix.draw(int(rate * step_s) + 100))
            counts, cpu = cache_counts(ops), server.cpu()
            point = attack(targets, rate, step_s, 200, workdir)
            used, after = server.cpu() - cpu, cache_counts(ops)
            asked = {k: after.get(k, 0.0) - counts.get(k, 0.0) for k in ("hit", "miss", "bypass")}
            reads = sum(asked.values())
            steps.append({
                **point.as_dict(),
                "cpu_us_per_request": round(used / max(point.requests, 1) * 1e6, 1),
                "hit_ratio": round(asked["hit"] / reads, 3) if reads else None,
                "bypass": asked["bypass"],
            })  # fmt: skip
            server.quiesce()
        steps.append({"worker_peak_rss_kib": max(rss_kb(p) for p in children(server.proc.pid))})
    finally:
        server.stop()
    return steps


def capacity(points: list[dict[str, Any]]) -> int:
    held = 0
    for p in points:
        if p["p99_ms"] > SLO_MS or p["errors"]:
            break
        held = p["rate"]
    return held


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    step_s = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    entries = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
    run = uuid.uuid4().hex[:6]
    tag = f"bench-rc-{run}"
    settings = project(run, tag)
    variants = {"off": 0, "cache": entries}
    results: dict[str, dict[str, list[Any]]] = {mix: {v: [] for v in variants} for mix in ("uniform", "zipf")}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                for kind in ("uniform", "zipf"):
                    order = list(variants) if r % 2 == 0 else list(reversed(variants))
                    for name in order:
                        mix = Mix(kind, run, seed=1000 * r)  # both variants read the same names in the same order
                        steps = run_variant(settings, variants[name], mix, step_s, Path(tmp))
                        points = steps[:-1]
                        results[kind][name].append({"capacity": capacity(points), "steps": steps})
                        shown = " ".join(
                            f"{p['rate']}:{p['p99_ms']:.1f}ms/{p['cpu_us_per_request']:.0f}us/{p['hit_ratio']}"
                            for p in points
                        )
                        rss = steps[-1]["worker_peak_rss_kib"]
                        log.info(
                            "round %d %s %s: capacity %d; %s; rss %s KiB",
                            r + 1,
                            kind,
                            name,
                            capacity(points),
                            shown,
                            rss,
                        )
    finally:
        forget(settings, tag)
    summary = {
        kind: {
            name: {
                "capacity": median([float(x["capacity"]) for x in runs]),
                "capacities": [x["capacity"] for x in runs],
                "cpu_us_per_request_at_1000": median(
                    [p["cpu_us_per_request"] for x in runs for p in x["steps"][:-1] if p["rate"] == 1000]
                ),
                "hit_ratio_at_1000": median(
                    [p["hit_ratio"] or 0.0 for x in runs for p in x["steps"][:-1] if p["rate"] == 1000]
                ),
            }
            for name, runs in by_variant.items()
        }
        for kind, by_variant in results.items()
    }
    out = ROOT / ".run" / "read-cache.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"users": USERS, "entries": entries, "step_s": step_s, "summary": summary,
                               "runs": results}, indent=1))  # fmt: skip
    log.info("summary: %s", json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
