"""What every benchmark shares: settings of the local stack, processes, timing, medians."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
# BENCH_QUICK=1 (`make bench-quick`): a small, short run to check the harness, not to quote.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SCALE = float(os.environ.get("BENCH_SCALE", "0.1" if QUICK else "1.0"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2" if QUICK else "5"))
# make bench's servers listen on PORT_BASE .. PORT_BASE + 8 (BENCH_PORT_BASE: two runs side by side).
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "18080"))
BENCH_DB = 1  # the benchmarks use their own Redis database, flushed between runs


def bench_settings(**changes: object) -> Settings:
    base = Settings.from_env()
    url = base.redis_url.rsplit("/", 1)[0] + f"/{BENCH_DB}"
    return replace(base, redis_url=url, metrics_port=0, **changes)  # type: ignore[arg-type]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({name: str(getattr(settings, name[4:].lower())) for name in Settings.variables()})
    env.update(extra)
    return env


def wait_for(probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(interval)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rss_kb(pid: int) -> int:
    """Peak resident memory of a process (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> list[int]:
    """All cores' ticks since boot, from /proc/stat: user nice system idle iowait irq softirq steal."""
    return [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} cores, {cpu}, {mem_kb / 1024 / 1024:.0f} GiB"


# Noise control: the system under test on every core but the last, the load generator on the last.
# Redis, MariaDB and Kafka are left to the scheduler (they serve every contender alike).
_CORES = os.cpu_count() or 1
PINNING = _CORES >= 2 and shutil.which("taskset") is not None
SUT_CPUS = f"0-{_CORES - 2}" if _CORES > 2 else "0"
LOAD_CPUS = str(_CORES - 1)


def pinned(command: list[str], cpus: str) -> list[str]:
    """`command` run with `taskset -c cpus` when pinning is possible; its children inherit it."""
    return ["taskset", "-c", cpus, *command] if PINNING else command


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of the rounds' values (what every `*_spread` key holds)."""
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": median(clean), "min": min(clean), "max": max(clean), "n": len(clean)}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
