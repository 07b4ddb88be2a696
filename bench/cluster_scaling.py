"""`make bench-cluster`: 1, 2 and 3 consumers of one group projecting into the 3-master Redis Cluster.

Each round: a fresh 6-partition topic of N users (one event each), the Cluster flushed, k
`ums-find consume` processes started at once in a new group; timed until the projection holds
every user. The CPU each process spent is read from /proc, so the per-event cost of a consumer
and of a Redis master can be carried to machines with more cores (docs/capacity.md).
BENCH_CLUSTER_USERS (default 600,000; BENCH_QUICK: 60,000) and BENCH_ROUNDS set the size.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from adapters.settings import Settings
from bench.common import BIN, QUICK, RESULTS, ROOT, ROUNDS, cpu_seconds, env_for, machine, median, spread
from bench.plots import figure, save
from bench.projection import produce

log = logging.getLogger("bench")
PORTS = (7000, 7001, 7002)
URL = f"redis+cluster://127.0.0.1:{PORTS[0]}"
USERS = int(os.environ.get("BENCH_CLUSTER_USERS", "60000" if QUICK else "600000"))


def nodes() -> list[redis.Redis]:
    return [redis.Redis(port=port, socket_timeout=30) for port in PORTS]


def redis_pids() -> list[int]:
    return [int(node.info("server")["process_id"]) for node in nodes()]


def keys_held() -> int:
    return sum(int(node.dbsize()) for node in nodes())


def kafka_pid() -> int | None:
    out = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def run(settings: Settings, consumers: int, users: int) -> dict[str, Any]:
    """k consumers from start until the Cluster holds every user; wall time, rates and CPU per process."""
    for node in nodes():
        node.flushall()
    group = replace(settings, group_id=f"bench-cluster-{uuid.uuid4().hex[:6]}")
    env = env_for(group, UMS_LOG_LEVEL="WARNING")
    env["UMS_REDIS_URL"] = URL
    masters, broker = redis_pids(), kafka_pid()
    redis_cpu0, kafka_cpu0 = cpu_of(masters), cpu_of([broker] if broker else [])
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [str(BIN / "ums-find"), "consume"],
            env={**env, "UMS_HEARTBEAT_FILE": f"/tmp/ums-find-bench-cluster-{i}.health"},  # one each, as in pods
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        for i in range(consumers)
    ]
    first = tenth = ninetieth = None
    try:
        while (held := keys_held()) < users + 1:  # every user, plus the generation pointer
            now = time.monotonic() - started
            if first is None and held > 1:
                first = now
            if tenth is None and held >= users / 10:
                tenth = now
            if ninetieth is None and held >= users * 0.9:
                ninetieth = now
            if now > 900:
                raise TimeoutError(f"{consumers} consumers: {held} of {users} users after 900 s")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a consumer exited")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        consumer_cpu = [cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    redis_cpu = cpu_of(masters) - redis_cpu0
    kafka_cpu = cpu_of([broker] if broker else []) - kafka_cpu0
    steady = (ninetieth - tenth) if tenth is not None and ninetieth is not None else float("nan")
    return {
        "consumers": consumers,
        "seconds": seconds,
        "eps_from_start": users / seconds,
        "eps_steady": users * 0.8 / steady if steady > 0 else float("nan"),
        "first_write_s": first,
        "consumer_cpu_s": sum(consumer_cpu),
        "redis_cpu_s": redis_cpu,
        "kafka_cpu_s": kafka_cpu,
        "consumer_cpu_us_per_event": sum(consumer_cpu) / users * 1e6,
        "redis_cpu_us_per_event": redis_cpu / users * 1e6,
    }


def summarise(runs: dict[int, list[dict[str, Any]]], users: int) -> dict[str, Any]:
    by_k = {
        k: {
            key: spread([r[key] for r in rows])
            for key in (
                "seconds",
                "eps_from_start",
                "eps_steady",
                "consumer_cpu_us_per_event",
                "redis_cpu_us_per_event",
                "kafka_cpu_s",
            )
        }
        for k, rows in runs.items()
    }
    one = by_k[1]["eps_steady"]["median"]
    return {
        "users": users,
        "rounds": len(runs[1]),
        "by_consumers": by_k,
        "scaling_vs_one": {k: v["eps_steady"]["median"] / one for k, v in by_k.items()},
        "runs": runs,
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_end": os.getloadavg(),
    }


def chart(summary: dict[str, Any], path: Path) -> None:
    """Events/s against consumers (median, min-max of the rounds) and CPU per event, side by side."""
    fig, (left, right) = figure((11, 4.2), panels=2)
    ks = sorted(summary["by_consumers"], key=int)
    xs = [int(k) for k in ks]
    for key, label in (("eps_steady", "steady (10-90 % of users)"), ("eps_from_start", "from start")):
        cells = [summary["by_consumers"][k][key] for k in ks]
        mid = [c["median"] for c in cells]
        below = [c["median"] - c["min"] for c in cells]
        above = [c["max"] - c["median"] for c in cells]
        left.errorbar(xs, mid, yerr=[below, above], marker="o", capsize=4, label=label)
    one = summary["by_consumers"][ks[0]]["eps_steady"]["median"]
    left.plot(xs, [one * x for x in xs], linestyle="--", color="grey", label="linear from one consumer")
    left.set_xlabel("consumers")
    left.set_ylabel("events/s")
    left.set_xticks(xs)
    left.legend(fontsize="small")
    left.set_title(f"{summary['users']:,} users into a 3-master Redis Cluster")
    width = 0.35
    for offset, (key, label) in ((-width / 2, ("consumer_cpu_us_per_event", "consumers")),
                                 (width / 2, ("redis_cpu_us_per_event", "3 Redis masters"))):  # fmt: skip
        right.bar([x + offset for x in xs], [summary["by_consumers"][k][key]["median"] for k in ks], width, label=label)
    right.set_xlabel("consumers")
    right.set_ylabel("CPU µs per event (all processes)")
    right.set_xticks(xs)
    right.legend(fontsize="small")
    right.set_title("CPU per event (median of the rounds)")
    fig.suptitle(f"ums-find: consumers in one group on 2 cores, {summary.get('date', '')}")
    save(fig, path)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    subprocess.run([str(ROOT / "services" / "stack.sh"), "cluster-up"], check=True)
    settings = replace(Settings.from_env(), topic=f"bench.cluster.{uuid.uuid4().hex[:6]}", metrics_port=0)
    produce(settings, USERS)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}
    for round_no in range(ROUNDS):
        order = [1, 2, 3] if round_no % 2 == 0 else [3, 2, 1]  # alternate: drift hits every k alike
        for k in order:
            result = run(settings, k, USERS)
            log.info("round %d, %d consumer(s): %.0f events/s steady", round_no + 1, k, result["eps_steady"])
            runs[k].append(result)
    summary = summarise(runs, USERS)
    target = RESULTS / "cluster-scaling.json" if not QUICK else Path("/tmp/cluster-scaling-quick.json")
    target.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    chart(summary, target.with_suffix(".png"))
    log.info("wrote %s: %s", target, {k: round(median([r["eps_steady"] for r in v])) for k, v in runs.items()})


if __name__ == "__main__":
    main()
