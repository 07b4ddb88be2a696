"""Open-loop load: vegeta at a constant request rate, latencies per request, nearest-rank percentiles.

vegeta sends each request at its scheduled time whether or not earlier ones have answered
(it adds workers as needed), so a slow server shows up as latency instead of as a lower
request rate: no coordinated omission. Its connections are bounded as a client's pool is
(MAX_CONNECTIONS): a request that finds them all busy waits for one, and the wait counts in its
latency. The load generator runs pinned to its own core, its Go collector deferred (VEGETA_GC).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import subprocess
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import LOAD_CPUS, ROOT, percentile, pinned

log = logging.getLogger("bench")
TIMEOUT_S = 5
# vegeta's -max-connections (0: no bound), as a client's pool bounds them (Envoy's default circuit
# breaker allows 1,024). Unbounded, one vegeta core opened 12,000 connections once a server's
# latency rose at 4x the capacity, then spent its core on them and sent a fraction of the offered
# rate while the server idled: the figure measured vegeta (docs/decisions.md "Kernel stamps").
MAX_CONNECTIONS = int(os.environ.get("BENCH_MAX_CONNECTIONS", "1000"))
# vegeta's Go collector, deferred until its heap reaches a memory limit. On its one core, once a
# hiccup had made it open ~1,000 connections, each collection marked a 12 MB live heap for 11-15 ms
# every ~150 ms, and its p99 against a server answering in 0.2 ms stayed at 13-15 ms for the rest of
# the step (GODEBUG=gctrace=1; docs/decisions.md "The client's collector"). Marking costs the live
# heap, not the garbage: at the limit one collection takes as long, once every ~20 s instead.
VEGETA_GC = {
    "GOGC": os.environ.get("BENCH_VEGETA_GOGC", "off"),
    "GOMEMLIMIT": os.environ.get("BENCH_VEGETA_GOMEMLIMIT", "2GiB"),
}


@functools.cache
def vegeta() -> str:
    """The vegeta binary (bench/tools.sh builds it once into the cache)."""
    out = subprocess.run(["bash", str(ROOT / "bench" / "tools.sh")], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def vegeta_version() -> str:
    """The pinned version bench/tools.sh installs (a `go install` build carries no -version stamp)."""
    for line in (ROOT / "bench" / "tools.sh").read_text().splitlines():
        if line.startswith("VEGETA_VERSION="):
            return line.split("=", 1)[1]
    return "unknown"


@dataclass
class Point:
    """One constant-rate attack: what was asked, what came back."""

    rate: int
    duration_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int  # transport errors, timeouts and unexpected status codes
    codes: dict[str, int] = field(default_factory=dict)

    def meets(self, slo_ms: float) -> bool:
        return self.p99_ms <= slo_ms and self.errors == 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def write_targets(path: Path, base: str, names: list[str]) -> Path:
    """A vegeta targets file: one `GET <url>` per name; vegeta goes round them in order."""
    path.write_text("".join(f"GET {base}/user/{urllib.parse.quote(n)}\n" for n in names))
    return path


def attack_csv(
    targets: Path, rate: int, duration_s: float, workdir: Path, timeout_s: float = TIMEOUT_S, keepalive: bool = True
) -> str:
    """One constant-rate vegeta attack as vegeta's CSV; keepalive False opens a connection per request."""
    out = workdir / "attack.bin"
    subprocess.run(
        pinned(
            [
                vegeta(),
                "attack",
                f"-rate={rate}/1s",
                f"-duration={duration_s}s",
                f"-targets={targets}",
                f"-timeout={timeout_s}s",
                f"-keepalive={str(keepalive).lower()}",
                f"-output={out}",
                f"-max-connections={MAX_CONNECTIONS}",
            ],
            LOAD_CPUS,
        ),
        check=True,
        capture_output=True,
        env={**os.environ, **VEGETA_GC},
    )
    text = subprocess.run([vegeta(), "encode", "-to=csv", str(out)], capture_output=True, text=True, check=True)
    return text.stdout


def attack(targets: Path, rate: int, duration_s: float, expect: int, workdir: Path, keepalive: bool = True) -> Point:
    csv_text = attack_csv(targets, rate, duration_s, workdir, keepalive=keepalive)
    return summarise(csv_text, rate, duration_s, expect)


def summarise(csv_text: str, rate: int, duration_s: float, expect: int) -> Point:
    """vegeta's CSV: timestamp, code, latency (ns), bytes out, bytes in, error, body, ..."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    errors = 0
    for row in csv.reader(io.StringIO(csv_text)):
        code, latency_ns = row[1], int(row[2])
        codes[code] = codes.get(code, 0) + 1
        latencies.append(latency_ns / 1e6)
        # vegeta fills `error` for any non-2xx status too; a transport error or timeout has code 0.
        if code != str(expect):
            errors += 1
    latencies.sort()
    return Point(
        rate=rate,
        duration_s=duration_s,
        requests=len(latencies),
        p50_ms=round(percentile(latencies, 50), 3),
        p99_ms=round(percentile(latencies, 99), 3),
        p999_ms=round(percentile(latencies, 99.9), 3),
        max_ms=round(latencies[-1], 3) if latencies else float("nan"),
        errors=errors,
        codes=codes,
    )
