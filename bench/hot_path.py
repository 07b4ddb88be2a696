"""The hot path (api/hot.py) against Flask answering every request, and the fixed-body ceiling, same run.

20,000 users projected through Kafka and the real consumer; three servers under gunicorn pinned to
the system-under-test core as `make bench` pins them: ours as shipped, ours with
UMS_API_HOT_PATH=false (Flask answers every request), the ceiling. Per round, in a rotated order:
the servers' CPU per request at 1,000 req/s (10 s, vegeta open loop on the other core, after 3 s at
500 req/s), then the open-loop ladder of `make bench` (6 s per rate, climbing while p99 <= 10 ms
with no errors). Medians and spreads over the rounds.

python -m bench.hot_path [ROUNDS]   (make bench-hot-path) -> bench/results/hot-path.{json,png}
BENCH_QUICK=1 (1 round) or fewer than 3 rounds: written to .run/, never over the published figures;
the projected users are deleted at the end.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import PORT_BASE, QUICK, RESULTS, ROOT, machine, spread
from bench.loadgen import attack, write_targets
from bench.openloop import Series, capacity, run_series
from bench.overload_run import forget
from bench.plots import figure, save
from bench.projection import bench_name
from bench.request_costs import project
from bench.servers import Server, gunicorn

log = logging.getLogger("bench")
USERS = 20_000
ROUNDS = 3  # fewer (BENCH_QUICK, or an argument below this) write to .run/, never over the published figures
CPU_RATE, CPU_S = 1000, 10.0
VARIANTS = ("hot", "flask", "ceiling")


def servers(settings: Any) -> dict[str, Server]:
    ceiling = "bench.peers.ceiling_app:create_app()"
    return {
        "hot": gunicorn(settings, PORT_BASE + 60),
        "flask": gunicorn(replace(settings, api_hot_path=False), PORT_BASE + 61),
        "ceiling": gunicorn(settings, PORT_BASE + 62, ceiling),
    }


def cpu_per_request(server: Server, targets: Path, workdir: Path) -> dict[str, float]:
    """CPU microseconds per request of the server's processes at CPU_RATE, and that step's p99."""
    attack(targets, 500, 3, 200, workdir)
    server.quiesce()
    before = server.cpu()
    point = attack(targets, CPU_RATE, CPU_S, 200, workdir)
    server.quiesce()
    return {"cpu_us": (server.cpu() - before) / point.requests * 1e6, "p99_ms": point.p99_ms, "errors": point.errors}


def summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, runs in rounds.items():
        rates = sorted({int(rate) for run in runs for rate in run["ladder"]})
        out[name] = {
            "cpu_us_per_request": spread([run["cpu"]["cpu_us"] for run in runs]),
            "capacity_rps": spread([float(run["capacity"]) for run in runs]),
            "p99_ms": {
                str(rate): spread([run["ladder"][str(rate)] for run in runs if str(rate) in run["ladder"]])
                for rate in rates
            },
        }
    hot, flask, ceiling = (out[n] for n in VARIANTS)
    out["ratios"] = {
        "cpu_hot_vs_flask": hot["cpu_us_per_request"]["median"] / flask["cpu_us_per_request"]["median"],
        "capacity_hot_vs_flask": hot["capacity_rps"]["median"] / flask["capacity_rps"]["median"],
        "capacity_hot_vs_ceiling": hot["capacity_rps"]["median"] / ceiling["capacity_rps"]["median"],
    }
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    fig, ax = figure((7, 4.5))
    for name in VARIANTS:
        table = result[name]["p99_ms"]
        rates = sorted(table, key=int)
        xs = [int(r) for r in rates]
        mid = [table[r]["median"] for r in rates]
        low = [table[r]["median"] - table[r]["min"] for r in rates]
        high = [table[r]["max"] - table[r]["median"] for r in rates]
        ax.errorbar(xs, mid, yerr=[low, high], marker="o", capsize=3, label=name)
    ax.axhline(10, color="grey", linestyle="--", linewidth=1, label="SLO p99 10 ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (req/s, open loop)")
    ax.set_ylabel("p99 (ms; median of rounds, min-max)")
    ax.set_title("GET /user/<name> on one core: hot path, Flask only, fixed-body ceiling")
    ax.legend()
    save(fig, path)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rounds = 1 if QUICK else int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    settings = project(USERS)
    pick = random.Random(7)
    names = [bench_name(pick.randrange(USERS)) for _ in range(20_000)]
    running = servers(settings)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            for r in range(rounds):
                for name in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                    server = running[name]
                    targets = write_targets(workdir / f"t-{name}", server.base, names)
                    cpu = cpu_per_request(server, targets, workdir)
                    ladder = run_series(Series(name, server, targets, 200, capacity=True), workdir)
                    held = capacity(ladder)
                    p99 = {str(rate): p.p99_ms for rate, p in ladder.items()}
                    results[name].append({"cpu": cpu, "capacity": held, "ladder": p99})
                    log.info("round %d %s: %.0f us/request; capacity %d; p99 %s", r + 1, name, cpu["cpu_us"], held, p99)
    finally:
        for server in running.values():
            server.stop()
        forget(settings, settings.key_prefix)
    result = {"machine": machine(), "users": USERS, "rounds": rounds, **summary(results), "runs": results}
    out = (ROOT / ".run" if QUICK or rounds < ROUNDS else RESULTS) / "hot-path.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    log.info("ratios %s; written to %s", json.dumps(result["ratios"]), out)
    medians = {n: (result[n]["cpu_us_per_request"]["median"], result[n]["capacity_rps"]) for n in VARIANTS}
    log.info("CPU us per request, capacity: %s", medians)


if __name__ == "__main__":
    main()
