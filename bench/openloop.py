"""Open-loop latency at fixed request rates, and capacity at the SLO (p99 <= 10 ms, no errors).

Series (each a server and a list of names):
    ours       our API, names the projection holds
    fallback   our API with an empty projection: MySQL answers (the fallback path)
    unknown    our API, names nobody has (404: projection miss, then MySQL or the unknown-name cache)
    ceiling    the same Flask under the same gunicorn settings answering a fixed body
    seed       the article's FindService (waitress, a MySQL connection per request)
Every series runs the issue's rates (250, 500, 1,000, 2,000 req/s); the capacity series also
climb the ladder between and above them while the previous rate held the SLO. Rounds alternate
the series so a drifting machine load hits all of them alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import QUICK, median, spread
from bench.loadgen import Point, attack
from bench.servers import Server

log = logging.getLogger("bench")
SLO_MS = 10.0
RATES = [250, 500, 1000, 2000]
# 1,250: the capacity target (1,200) lies between 1,000 and 1,500 and would go unseen without it.
# 1,750 and 2,250: with 500-wide rungs above 1,500 ours over the ceiling's capacity could only read
# 0.75 or 1.0 against a ceiling at 2,000, and the 0.8 target lies between (one rung decided it twice).
# 5,000 and 6,000: on a host twice as fast per request (2026-12-06 13:06) the ceiling held 4,000, the
# old top, in every round, so its capacity (and ours over it) was only a bound.
# 3,500, 4,500 and 5,500: the sixteenth run (2026-12-06) found ours at 3,000 and the ceiling at 4,000
# with 1,000-wide rungs between, so the ratio could only read 0.75 or 1.0 there (each capacity
# understated by up to a third); rungs 11-17 % apart keep the ratio's resolution near the 0.8 target.
LADDER = [250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2250, 2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000]
DURATION_S = 2.0 if QUICK else 6.0


@dataclass
class Series:
    name: str
    server: Server
    targets: Path
    expect: int  # the status every request should get
    capacity: bool  # climb the ladder to find the highest rate within the SLO


def run_series(series: Series, workdir: Path) -> dict[int, Point]:
    rates = LADDER if series.capacity else RATES
    points: dict[int, Point] = {}
    holding = True
    attack(series.targets, 100, 1.0, series.expect, workdir)  # warm-up: connections, caches
    for rate in rates:
        if rate not in RATES and not holding:
            continue  # above its capacity already: only the rates are still measured
        point = attack(series.targets, rate, DURATION_S, series.expect, workdir)
        points[rate] = point
        holding = holding and point.meets(SLO_MS)
        if not point.meets(SLO_MS):
            series.server.settle()
    # Past its capacity a server keeps serving requests whose clients left; the next series on
    # the same core must not pay for them (seen: the seed busy for minutes after 2,000 req/s).
    waited = series.server.quiesce()
    if waited > 1:
        log.info("  %s: %.1f s until idle", series.name, waited)
    return points


def capacity(points: dict[int, Point]) -> int:
    """The highest rate held within the SLO with every lower rate held too (0: not even the first)."""
    held = 0
    for rate in sorted(points):
        if not points[rate].meets(SLO_MS):
            break
        held = rate
    return held


def open_loop_suite(series: list[Series], rounds: int, workdir: Path) -> dict[str, object]:
    runs: dict[str, list[dict[int, Point]]] = {s.name: [] for s in series}
    # Each round's (start, end) on the wall clock, as the steal sampler stamps its samples (run.py).
    windows: dict[str, list[tuple[float, float]]] = {s.name: [] for s in series}
    for r in range(rounds):
        log.info("open-loop round %d of %d", r + 1, rounds)
        for s in series:
            started = time.time()
            runs[s.name].append(run_series(s, workdir))
            windows[s.name].append((started, time.time()))
            held = capacity(runs[s.name][-1]) if s.capacity else "-"
            p99 = {rate: p.p99_ms for rate, p in runs[s.name][-1].items()}
            log.info("  %s: p99 ms by rate %s; capacity %s", s.name, p99, held)
    capacities = {s.name: [capacity(points) for points in runs[s.name]] for s in series if s.capacity}
    return {
        **summarise(runs, set(capacities)),
        "windows": windows,
        "capacity_rounds": capacities,
        "capacity_at_ladder_top": at_ladder_top(capacities),
    }


def at_ladder_top(capacities: dict[str, list[int]]) -> list[str]:
    """The series that held the ladder's top rung in some round: their capacity is a lower bound."""
    return sorted(name for name, rounds in capacities.items() if LADDER[-1] in rounds)


def summarise(runs: dict[str, list[dict[int, Point]]], with_capacity: set[str]) -> dict[str, object]:
    """Per series and rate: median and spread of p50/p99/p99.9 over the rounds; capacities."""
    table: dict[str, dict[str, dict[str, object]]] = {}
    capacities: dict[str, dict[str, float]] = {}
    for name, rounds in runs.items():
        table[name] = {}
        for rate in sorted({rate for points in rounds for rate in points}):
            got = [points[rate] for points in rounds if rate in points]
            table[name][str(rate)] = {
                "p50_ms": median([p.p50_ms for p in got]),
                "p99_ms": median([p.p99_ms for p in got]),
                "p999_ms": median([p.p999_ms for p in got]),
                "max_ms": max(p.max_ms for p in got),
                "p99_ms_spread": spread([p.p99_ms for p in got]),
                "errors": sum(p.errors for p in got),
                "requests": sum(p.requests for p in got),
                "rounds": len(got),
            }
        if name in with_capacity:
            capacities[name] = spread([float(capacity(points)) for points in rounds])
    return {"table": table, "capacity": capacities, "slo_ms": SLO_MS, "duration_s": DURATION_S}
