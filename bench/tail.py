"""Tail latency below saturation (issue 22, item 2): which setting moves the API's open-loop p99?

`make bench-tail` (stack environment loaded): projects users through Kafka and the real consumer,
then, for each configuration below, starts our API under gunicorn pinned to the system-under-test
cores (vegeta on the load core, as in `make bench`), and measures open-loop p50/p99 and errors at
fixed rates plus the capacity at p99 <= 10 ms with no errors. Rounds alternate the configurations
(and rotate their order) so drift hits all alike; medians and spreads over the rounds. Each
worker's share of the workers' CPU shows the balance between workers (keep-alive on and off).

BENCH_QUICK=1: one round, two rates, short points (harness check; written under .cache/, not for
quoting). BENCH_ROUNDS overrides the rounds, BENCH_TAIL_CONFIGS (comma-separated names) picks
configurations. `py313` needs `bench/py313.sh up` first (Debian 13's Python in a chroot);
`gevent` gets its own small venv on first use. Either is skipped, with the reason, when missing.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adapters.settings import Settings
from adapters.store import make_redis
from bench.common import BIN, PORT_BASE, QUICK, RESULTS, ROOT, children, cpu_seconds, env_for, machine, spread
from bench.loadgen import Point, attack, write_targets
from bench.openloop import SLO_MS, capacity
from bench.projection import bench_name
from bench.request_costs import project
from bench.servers import Server

log = logging.getLogger("bench")
RATES = [750, 1500] if QUICK else [750, 1000, 1250, 1500]
ABOVE = [] if QUICK else [2000, 2500]  # this bench's own ladder goes on while the SLO holds (coarser than make bench's)
BELOW = 500  # measured only when the first rate misses, so a capacity under it still reads
DURATION_S = 1.5 if QUICK else 2.0
# A full run stops starting rounds that would end past this (the issue asks <= 15 minutes in all).
BUDGET_S = float(os.environ.get("BENCH_TAIL_BUDGET_S", "840"))
# How long a point that missed may take to drain before the next (sync and gevent never shed).
SETTLE_S = 15.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
USERS = 2000 if QUICK else 20000
PORT = PORT_BASE + 10
PY313_ROOT = Path(os.environ.get("UMS_PY313_ROOT", "/var/tmp/ums-find-trixie"))
PY313_VENV = "/opt/ums-venv313"
GEVENT_VENV = ROOT / ".cache" / "bench-gevent"
GEVENT = "gevent==26.9.0"
NO_HIREDIS_CONF = ROOT / "bench" / "peers" / "no_hiredis.conf.py"


@dataclass(frozen=True)
class Config:
    """One contender: settings changed from today's, gunicorn options, the client's keep-alive, the interpreter."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    gunicorn_args: str = ""  # GUNICORN_CMD_ARGS: options the settings object has no name for
    keepalive: bool = True  # vegeta's: off opens a connection per request
    runtime: str = "host"  # host, py313 (chroot), gevent (its own venv)
    conf: Path = ROOT / "api" / "gunicorn.conf.py"


# Today's: gthread, CPUs + 1 workers (3 on 2 cores) x 4 threads, all on one core; Python 3.11's 5 ms
# switch interval; hiredis; gunicorn's worker_connections 1000; vegeta keeps connections alive.
CONFIGS = [
    Config("today-3x4"),
    Config("switch-1ms", {"api_switch_interval_ms": 1.0}),
    Config("switch-0.5ms", {"api_switch_interval_ms": 0.5}),
    Config("gthread-1x4", {"api_workers": 1, "api_threads": 4}),
    Config("gthread-2x4", {"api_workers": 2, "api_threads": 4}),
    Config("gthread-2x8", {"api_workers": 2, "api_threads": 8}),
    Config("sync-1x1", {"api_workers": 1, "api_worker_class": "sync"}),
    Config("sync-3x1", {"api_workers": 3, "api_worker_class": "sync"}),
    Config("worker-connections-8", gunicorn_args="--worker-connections 8"),
    Config("keepalive-off", keepalive=False),
    Config("no-hiredis", conf=NO_HIREDIS_CONF),
    Config("gevent-3", {"api_worker_class": "gevent"}, runtime="gevent"),
    Config("py313", runtime="py313"),
]


def command(config: Config) -> tuple[list[str], dict[str, str]]:
    """The gunicorn command line for `config`'s runtime, and extra environment for it."""
    conf = ["-c", str(config.conf), "--chdir", str(ROOT)]
    if config.runtime == "py313":
        extra = {"PYTHONPATH": str(ROOT)}
        return ["chroot", str(PY313_ROOT), f"{PY313_VENV}/bin/python", "-m", "gunicorn", *conf], extra
    if config.runtime == "gevent":
        return [str(GEVENT_VENV / "bin" / "python"), "-m", "gunicorn", *conf], {}
    return [str(BIN / "gunicorn"), *conf], {}


def unavailable(config: Config) -> str:
    """Why `config` cannot run here ('' when it can)."""
    if config.runtime == "py313" and not (PY313_ROOT / PY313_VENV.lstrip("/") / "bin" / "gunicorn").exists():
        return f"no Python 3.13 root at {PY313_ROOT} (run bench/py313.sh up as root)"
    if config.runtime == "gevent" and not gevent_ready():
        return f"could not install {GEVENT} into {GEVENT_VENV}"
    return ""


def gevent_ready() -> bool:
    """A venv with gevent only, seeing this venv's packages through a .pth file (no change to the project's)."""
    python = GEVENT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GEVENT_VENV)], check=True)
        site = next(p for p in sys.path if p.endswith("site-packages"))
        ours = subprocess.run(
            [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(ours, "ums-find-venv.pth").write_text(site + "\n")
    if subprocess.run([str(python), "-c", "import gevent"], capture_output=True).returncode == 0:
        return True
    return subprocess.run([str(python), "-m", "pip", "install", "-q", GEVENT]).returncode == 0


def start(config: Config, settings: Settings) -> Server:
    changed = replace(settings, **config.settings)
    cmd, extra = command(config)
    env = env_for(changed, UMS_API_BIND=f"127.0.0.1:{PORT}", UMS_API_ACCESS_LOG="/dev/null", UMS_LOG_LEVEL="WARNING")
    env.update(extra)
    if config.gunicorn_args:
        env["GUNICORN_CMD_ARGS"] = config.gunicorn_args
    return Server(cmd, env, PORT)


def worker_shares(server: Server, before: dict[int, float]) -> list[float]:
    """Each worker's share of the CPU the workers used since `before`, largest first."""
    used = [cpu_seconds(pid) - cpu for pid, cpu in before.items() if Path(f"/proc/{pid}").exists()]
    total = sum(used) or 1.0
    return sorted((round(u / total, 3) for u in used), reverse=True)


def workers(server: Server) -> list[int]:
    """The gunicorn workers' pids (under chroot and taskset, gunicorn's master is a grandchild or child)."""
    pids = children(server.proc.pid)
    while len(pids) == 1 and children(pids[0]):  # a wrapper (taskset exec's; chroot exec's too) or the master
        pids = children(pids[0])
    return pids


def run_config(config: Config, settings: Settings, names: list[str], workdir: Path) -> dict[str, Any]:
    """One round of one configuration: its points by rate, its capacity, its workers' CPU shares."""
    server = start(config, settings)
    try:
        targets = write_targets(workdir / "targets", server.base, names)
        attack(targets, 200, 1.0, 200, workdir, keepalive=config.keepalive)  # warm-up: connections, caches
        pids = workers(server)
        before = {pid: cpu_seconds(pid) for pid in pids}
        points: dict[int, Point] = {}
        holding = True
        for rate in RATES + ABOVE:
            if rate in ABOVE and not holding:
                break
            points[rate] = attack(targets, rate, DURATION_S, 200, workdir, keepalive=config.keepalive)
            if not points[rate].meets(SLO_MS):
                if rate == RATES[0]:
                    points[BELOW] = attack(targets, BELOW, DURATION_S, 200, workdir, keepalive=config.keepalive)
                holding = False
                try:
                    server.settle(SETTLE_S)
                except TimeoutError:  # still queueing: the next point says so in its latencies
                    log.warning("%s did not drain its queue within %.0f s", config.name, SETTLE_S)
        shares = worker_shares(server, before)
    finally:
        server.stop()
    return {
        "points": {rate: p.as_dict() for rate, p in sorted(points.items())},
        "capacity": capacity(points),
        "worker_shares": shares,
    }


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and spreads over the rounds of one configuration."""
    by_rate: dict[str, Any] = {}
    for rate in sorted({r for one in rounds for r in one["points"]}):
        got = [one["points"][rate] for one in rounds if rate in one["points"]]
        by_rate[str(rate)] = {
            "p50_ms": spread([p["p50_ms"] for p in got]),
            "p99_ms": spread([p["p99_ms"] for p in got]),
            "p999_ms": spread([p["p999_ms"] for p in got]),
            "errors": sum(p["errors"] for p in got),
            "requests": sum(p["requests"] for p in got),
            "codes": {c: sum(p["codes"].get(c, 0) for p in got) for c in {c for p in got for c in p["codes"]}},
        }
    return {
        "rates": by_rate,
        "capacity_at_p99_10ms_rps": spread([float(one["capacity"]) for one in rounds]),
        "largest_worker_share": spread([one["worker_shares"][0] for one in rounds if one["worker_shares"]]),
        "worker_shares": [one["worker_shares"] for one in rounds],
    }


def names_for(users: int) -> list[str]:
    pick = random.Random(22)
    return [bench_name(pick.randrange(users)) for _ in range(20000)]


def drop(settings: Settings) -> None:
    """The run's keys (its own prefix in the benchmarks' database): nothing else is touched."""
    client = make_redis(settings, timeout_s=30)
    for pattern in (f"{settings.key_prefix}:*", f"{{{settings.key_prefix}}}*"):
        keys = list(client.scan_iter(pattern, count=5000))
        for start_at in range(0, len(keys), 5000):
            client.delete(*keys[start_at : start_at + 5000])


def run(configs: list[Config]) -> dict[str, Any]:
    started, load_start = time.monotonic(), os.getloadavg()
    skipped = {c.name: why for c in configs if (why := unavailable(c))}
    live = [c for c in configs if c.name not in skipped]
    for name, why in skipped.items():
        log.warning("skipping %s: %s", name, why)
    settings = project(USERS)
    names = names_for(USERS)
    results: dict[str, list[dict[str, Any]]] = {c.name: [] for c in live}
    last_round_s = 0.0
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for r in range(ROUNDS):
                round_started = time.monotonic()
                if r and (round_started - started) + last_round_s > BUDGET_S:
                    log.warning("stopping after %d rounds: another would end past %.0f s", r, BUDGET_S)
                    break
                order = live[r % len(live) :] + live[: r % len(live)]  # rotated: no configuration always first
                for config in order:
                    one = run_config(config, settings, names, Path(workdir))
                    results[config.name].append(one)
                    p99 = {rate: p["p99_ms"] for rate, p in one["points"].items()}
                    log.info(
                        "round %d %s: p99 %s capacity %s shares %s",
                        r + 1,
                        config.name,
                        p99,
                        one["capacity"],
                        one["worker_shares"],
                    )
                last_round_s = time.monotonic() - round_started
    finally:
        drop(settings)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "quick": QUICK,
        "rounds": ROUNDS,
        "rounds_done": min(len(v) for v in results.values()) if results else 0,
        "users": USERS,
        "rates": RATES,
        "duration_s": DURATION_S,
        "slo_ms": SLO_MS,
        "configs": {
            c.name: {
                "settings": c.settings,
                "gunicorn_args": c.gunicorn_args,
                "keepalive": c.keepalive,
                "runtime": c.runtime,
                "conf": c.conf.name,
            }
            for c in live
        },
        "skipped": skipped,
        "results": {name: summarise(rounds) for name, rounds in results.items()},
        "rounds_raw": results,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def markdown(report: dict[str, Any]) -> str:
    """One row per configuration: p50/p99 by rate (median [min-max]), errors, capacity, largest worker share."""
    rates = [str(r) for r in sorted({int(r) for row in report["results"].values() for r in row["rates"]})]
    head = (
        ["configuration"]
        + [f"{r}/s p50 / p99 ms" for r in rates]
        + ["errors", "capacity (p99 <= 10 ms)", "largest worker share"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def cell(s: dict[str, float], digits: int = 1) -> str:
        if not s["n"]:
            return "-"
        return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"

    for name, row in report["results"].items():
        by_rate = row["rates"]
        cells = [
            f"{by_rate[r]['p50_ms']['median']:.1f} / {cell(by_rate[r]['p99_ms'])}" if r in by_rate else "-"
            for r in rates
        ]
        errors = sum(v["errors"] for v in by_rate.values())
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    *cells,
                    str(errors),
                    cell(row["capacity_at_p99_10ms_rps"], 0),
                    cell(row["largest_worker_share"], 2),
                ]
            )
            + " |"
        )
    notes = [f"- skipped {name}: {why}" for name, why in report["skipped"].items()]
    footer = (
        f"\n{report['date']}, {report['machine']}, {report['rounds_done']} round(s) of {report['duration_s']} s "
        f"points, load average {report['load_average_start'][0]:.2f} -> {report['load_average_end'][0]:.2f}, "
        f"{report['elapsed_s']:.0f} s in all.\n"
    )
    return "\n".join(lines) + "\n" + footer + "\n".join(notes) + ("\n" if notes else "")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    wanted = [n for n in os.environ.get("BENCH_TAIL_CONFIGS", "").split(",") if n]
    unknown = set(wanted) - {c.name for c in CONFIGS}
    if unknown:
        raise SystemExit(f"unknown configurations {sorted(unknown)}; known: {[c.name for c in CONFIGS]}")
    report = run([c for c in CONFIGS if not wanted or c.name in wanted])
    where = ROOT / ".cache" / "bench" if QUICK else RESULTS
    where.mkdir(parents=True, exist_ok=True)
    stem = "tail-quick" if QUICK else "tail"
    (where / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (where / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {where / stem}.json and .md")


if __name__ == "__main__":
    main()
