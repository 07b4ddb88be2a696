"""The overload curve: open-loop load from 0.5x to 4x of our measured capacity, then recovery.

Each peer (ours, the ceiling, the seed) gets the same offered rates, multiples of OUR capacity at
the SLO (api_capacity_at_p99_10ms_rps of the same run), STEP_S seconds each, client timeout 1 s
(vegeta, open loop). Per step: goodput (2xx answered within 50 ms, per second), admitted p99
(2xx), rejection p99 (503), client timeouts, other errors. After the 4x step the load drops to
0.5x at once for RECOVERY_S seconds: recovery is the first second from which the p99 of 2xx over
the next WINDOW_S seconds and over the rest of the run are both within the peer's own 0.5x p99
plus MARGIN_MS (`settled_second`); the same rule on the first RECOVERY_S seconds of the 0.5x step
(the control, no overload before it) must say 0. Between steps each peer drains
(a single request must answer fast) so one step's backlog does not land in the next.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import QUICK, percentile
from bench.loadgen import MAX_CONNECTIONS, attack_csv
from bench.openloop import LADDER, Series

log = logging.getLogger("bench")
MULTIPLES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
STEP_S = float(os.environ.get("BENCH_OVERLOAD_STEP_S", "3" if QUICK else "60"))
RECOVERY_S = float(os.environ.get("BENCH_OVERLOAD_RECOVERY_S", "5" if QUICK else "30"))
CLIENT_TIMEOUT_S = 1.0
GOOD_MS = 50.0  # a 2xx slower than this is not goodput: its user has given up or noticed
MARGIN_MS = 5.0  # recovered: windowed p99 of 2xx <= the 0.5x step's p99 + this, from then on
# The p99 of one second at 0.5x (250 requests at 500/s) is its 3rd-slowest answer: at steady load it
# crossed the margin now and then (2026-12-03: 8.7 ms against 8.3). Over 5 s it is the 13th-slowest.
WINDOW_S = 5
FAILED_KEPT = 200
QUOTED = re.compile(r'"[^"]*"')
DRAIN_TIMEOUT_S = 180.0


@dataclass
class Step:
    """One open-loop step at a multiple of the capacity: what was offered, what came back."""

    multiple: float
    offered_rps: int
    duration_s: float
    sent: int
    goodput_rps: float
    ok: int
    admitted_p50_ms: float
    admitted_p99_ms: float
    rejected: int
    reject_p50_ms: float
    reject_p99_ms: float
    # Ours only: 503s answered by gunicorn's main thread on arrival (api/worker.py) and their p99;
    # the rest were shed when a pool thread took them (they waited in the queue first).
    rejected_on_arrival: int
    reject_arrival_p99_ms: float
    reject_dequeue_p99_ms: float
    timeouts: int
    other_errors: int
    # What vegeta said of each request that got no status, URL removed (a refused or reset connection, a
    # connect that timed out, a reply that did not come), and when the first FAILED_KEPT of them were sent:
    # 37 client timeouts at 2x in the 2026-12-04 run could not be placed afterwards.
    failures: dict[str, int]
    failed_at_s: list[float]
    failed_span_s: list[float]  # when the first and the last of them were sent (all, not only those kept)
    # vegeta fell behind (sent under 95 % of the offered requests, or a latency far past its own
    # timeout): its core was starved and the step measured the client as much as the server.
    generator_behind: bool
    codes: dict[str, int] = field(default_factory=dict)
    drain_s: float | None = None
    # The 503s' p99 of each second they were sent in (NaN: none that second): a step's p99 is often a few bad
    # seconds, such as its start (docs/decisions.md "The 4x step in make bench's sequence").
    reject_p99_ms_by_second: list[float] = field(default_factory=list)


@dataclass(slots=True)  # a 60 s step at 4x is a few hundred thousand of these
class Result:
    """One request as vegeta saw it: send time (s, from the attack's first), status, latency (ms)."""

    at_s: float
    code: str
    latency_ms: float
    timed_out: bool
    on_arrival: bool = False  # a 503 without a Server header: api/worker.py's raw answer on the main thread
    error: str = ""  # vegeta's error text, URL removed


def parse(csv_text: str) -> list[Result]:
    """vegeta's CSV: timestamp (ns), code, latency (ns), bytes out, bytes in, error, body, ..."""
    rows = list(csv.reader(io.StringIO(csv_text)))
    if not rows:
        return []
    first = min(int(r[0]) for r in rows)
    return [
        Result(
            (int(r[0]) - first) / 1e9,
            r[1],
            int(r[2]) / 1e6,
            r[1] == "0" and "timeout" in r[5].lower(),
            raw(r),
            QUOTED.sub('""', r[5]) if r[1] == "0" else "",
        )
        for r in rows
    ]


def raw(row: list[str]) -> bool:
    """Whether a 503 came without gunicorn's Server header (the last column: the headers, base64)."""
    return row[1] == "503" and len(row) > 11 and b"\nserver:" not in b"\n" + base64.b64decode(row[11]).lower()


def summarise(results: list[Result], multiple: float, rate: int, duration_s: float) -> Step:
    """Goodput, admitted and rejection percentiles, timeouts and other errors of one step."""
    ok = sorted(r.latency_ms for r in results if is_answer(r))
    rejected = sorted(r.latency_ms for r in results if is_rejection(r))
    arrival = sorted(r.latency_ms for r in results if r.on_arrival)
    dequeue = sorted(r.latency_ms for r in results if is_rejection(r) and not r.on_arrival)
    timeouts = sum(r.timed_out for r in results)
    failed_at = sorted(round(r.at_s, 3) for r in results if r.code == "0")
    codes: dict[str, int] = {}
    failures: dict[str, int] = {}
    for r in results:
        codes[r.code] = codes.get(r.code, 0) + 1
        if r.code == "0":
            failures[r.error] = failures.get(r.error, 0) + 1
    return Step(
        multiple=multiple,
        offered_rps=rate,
        duration_s=duration_s,
        sent=len(results),
        goodput_rps=round(sum(1 for v in ok if v <= GOOD_MS) / duration_s, 1),
        ok=len(ok),
        admitted_p50_ms=round(percentile(ok, 50), 2),
        admitted_p99_ms=round(percentile(ok, 99), 2),
        rejected=len(rejected),
        reject_p50_ms=round(percentile(rejected, 50), 2),
        reject_p99_ms=round(percentile(rejected, 99), 2),
        rejected_on_arrival=len(arrival),
        reject_arrival_p99_ms=round(percentile(arrival, 99), 2),
        reject_dequeue_p99_ms=round(percentile(dequeue, 99), 2),
        timeouts=timeouts,
        other_errors=len(results) - len(ok) - len(rejected) - timeouts,
        failures=failures,
        reject_p99_ms_by_second=[
            round(percentile(sorted(b), 99), 2) for b in by_second(results, math.ceil(duration_s), is_rejection)
        ],
        failed_at_s=failed_at[:FAILED_KEPT],
        failed_span_s=[failed_at[0], failed_at[-1]] if failed_at else [],
        generator_behind=behind(results, rate * duration_s),
        codes=codes,
    )


def behind(results: list[Result], offered: float) -> bool:
    """Whether vegeta failed to send what was offered or saw latencies well past its own timeout."""
    slowest = max((r.latency_ms for r in results), default=0.0)
    return len(results) < 0.95 * offered or slowest > 2000 * CLIENT_TIMEOUT_S


def per_second_p99(results: list[Result], seconds: int) -> list[float]:
    """p99 of the 2xx latencies of the requests sent in each second (NaN: no 2xx that second)."""
    return window_p99(results, seconds, 1)


def answered_by_second(results: list[Result], seconds: int) -> list[list[float]]:
    """The 2xx latencies by the second they were sent in, for the first `seconds` seconds."""
    return by_second(results, seconds, is_answer)


def by_second(results: list[Result], seconds: int, keep: Callable[[Result], bool]) -> list[list[float]]:
    """The latencies of the results `keep` takes, by the second they were sent in, for the first `seconds`."""
    per_second: list[list[float]] = [[] for _ in range(seconds)]
    for r in results:
        if keep(r) and int(r.at_s) < seconds:
            per_second[int(r.at_s)].append(r.latency_ms)
    return per_second


def is_answer(r: Result) -> bool:
    return r.code.startswith("2")


def is_rejection(r: Result) -> bool:
    return r.code == "503"


def window_p99(results: list[Result], seconds: int, window: int) -> list[float]:
    """p99 of the 2xx latencies sent in [t, t + window) for each whole window start t (NaN: no 2xx)."""
    per_second = answered_by_second(results, seconds)
    window = max(1, min(window, seconds))
    return [
        percentile(sorted(x for b in per_second[t : t + window] for x in b), 99) for t in range(seconds - window + 1)
    ]


def settled_second(results: list[Result], seconds: int, window: int, threshold_ms: float) -> float | None:
    """The first second t from which the service answers as at its baseline again: the p99 of the 2xx sent
    in [t, t + window) and of every 2xx sent from t to the end both within the threshold (None: never).

    The baseline is a p99 over a whole 60 s step; the rest of the run is the same statistic over a
    like span, so a lone stall of the machine late in the run (every ~10-30 s here, in runs without
    any overload before them too) is not read as the overload still lasting, while a slow start
    still fails its first windows.
    """
    per_second = answered_by_second(results, seconds)
    window = max(1, min(window, seconds))
    for t in range(seconds - window + 1):
        local = sorted(x for b in per_second[t : t + window] for x in b)
        rest = sorted(x for b in per_second[t:] for x in b)
        if local and percentile(local, 99) <= threshold_ms and percentile(rest, 99) <= threshold_ms:
            return float(t)
    return None


def recovery_seconds(p99s: list[float], threshold_ms: float) -> float | None:
    """Seconds until every later window's p99 is within the threshold (None: not within the run)."""
    recovered: float | None = None
    for second, p99 in enumerate(p99s):
        within = p99 == p99 and p99 <= threshold_ms  # NaN (no 2xx at all) is not recovered
        if not within:
            recovered = None
        elif recovered is None:
            recovered = float(second)
    return recovered


def drain(url: str, timeout_s: float = DRAIN_TIMEOUT_S) -> float | None:
    """Wait until three requests in a row answer 2xx within GOOD_MS; the seconds it took (None: never)."""
    started = time.monotonic()
    fast = 0
    while fast < 3:
        if time.monotonic() - started > timeout_s:
            log.warning("  %s did not drain within %.0f s", url, timeout_s)
            return None
        try:
            answer = requests.get(url, timeout=CLIENT_TIMEOUT_S)
            quick = answer.ok and answer.elapsed.total_seconds() * 1000 <= GOOD_MS
        except requests.RequestException:
            quick = False
        fast = fast + 1 if quick else 0
        if not quick:
            time.sleep(0.2)
    return round(time.monotonic() - started, 2)


def first_url(targets: Path) -> str:
    return targets.read_text().split("\n", 1)[0].split(" ", 1)[1]


def run_peer(series: Series, capacity: int, workdir: Path) -> dict[str, Any]:
    """Every step for one peer, draining between steps; then the drop from 4x to 0.5x (recovery)."""
    url = first_url(series.targets)
    attack_csv(series.targets, 100, 1.0, workdir, CLIENT_TIMEOUT_S)  # warm-up: connections, caches
    drain(url)
    steps: list[Step] = []
    control: list[Result] = []
    for multiple in MULTIPLES:
        rate = max(1, round(multiple * capacity))
        answers = parse(attack_csv(series.targets, rate, STEP_S, workdir, CLIENT_TIMEOUT_S))
        step = summarise(answers, multiple, rate, STEP_S)
        if multiple == MULTIPLES[0]:
            control = answers  # after a drain, from a fresh client: as the recovery starts, minus the overload
        if multiple != MULTIPLES[-1]:
            step.drain_s = drain(url)
            # Answering fast is not idle: a server may still work through requests whose clients left.
            idle_s = series.server.quiesce()
            if step.drain_s is not None:
                step.drain_s += idle_s
        steps.append(step)
        log.info(
            "  overload %s %.1fx (%d/s): goodput %.0f/s, 2xx p99 %.1f ms, 503 %d (p99 %.1f ms; "
            "on arrival %d, p99 %.1f ms; after queueing p99 %.1f ms), timeouts %d, other %d",
            series.name, multiple, rate, step.goodput_rps, step.admitted_p99_ms, step.rejected, step.reject_p99_ms,
            step.rejected_on_arrival, step.reject_arrival_p99_ms, step.reject_dequeue_p99_ms, step.timeouts,
            step.other_errors,
        )  # fmt: skip
        if step.generator_behind:
            log.warning("  overload %s %.1fx: vegeta fell behind (sent %d of %d)", series.name, multiple, step.sent,
                        round(rate * STEP_S))  # fmt: skip
    low = round(MULTIPLES[0] * capacity)
    results = parse(attack_csv(series.targets, low, RECOVERY_S, workdir, CLIENT_TIMEOUT_S))  # at once, no drain
    threshold = steps[0].admitted_p99_ms + MARGIN_MS
    seconds = int(RECOVERY_S)
    p99s = per_second_p99(results, seconds)
    windows = window_p99(results, seconds, WINDOW_S)
    recovered = settled_second(results, seconds, WINDOW_S, threshold)
    every_window = recovery_seconds(windows, threshold)
    control_s = settled_second(control, seconds, WINDOW_S, threshold)
    control_every_window = recovery_seconds(window_p99(control, seconds, WINDOW_S), threshold)
    after = summarise(results, MULTIPLES[0], low, RECOVERY_S)
    after.drain_s = drain(url)
    idle_s = series.server.quiesce()
    if after.drain_s is not None:
        after.drain_s += idle_s
    log.info("  overload %s recovery: %s s (every later %d s window within: %s s; the 0.5x step as control: %s s, "
             "%s s; threshold %.1f ms; p99 per window %s)", series.name, recovered, WINDOW_S, every_window, control_s,
             control_every_window, threshold, [round(p, 1) for p in windows])  # fmt: skip
    return {
        "steps": [asdict(s) for s in steps],
        "recovery_s": recovered,
        "recovery_every_window_s": every_window,
        "control_recovery_s": control_s,
        "control_every_window_s": control_every_window,
        "recovery_threshold_ms": round(threshold, 2),
        "recovery_p99_ms_per_window": [round(p, 2) for p in windows],
        "recovery_p99_ms_per_second": [round(p, 2) for p in p99s],
        "recovery": asdict(after),
    }


def overload_capacity(capacity: float) -> tuple[int, str]:
    """Our capacity at the SLO, or the lowest ladder rate when no rate held it (said in the results)."""
    if capacity == capacity and capacity > 0:
        return int(capacity), "api_capacity_at_p99_10ms_rps"
    return LADDER[0], f"lowest ladder rate ({LADDER[0]} req/s): no rate held the SLO"


def overload_suite(series: list[Series], capacity: float, workdir: Path) -> dict[str, Any]:
    """The overload curve of every peer on the same offered rates (multiples of our capacity)."""
    rate, source = overload_capacity(capacity)
    log.info("overload: capacity %d req/s (%s), %.0f s per step", rate, source, STEP_S)
    by_peer = {s.name: run_peer(s, rate, workdir) for s in series}
    return {
        "capacity_rps": rate,
        "capacity_source": source,
        "step_s": STEP_S,
        "recovery_window_s": RECOVERY_S,
        "client_timeout_s": CLIENT_TIMEOUT_S,
        "client_max_connections": MAX_CONNECTIONS,
        "good_ms": GOOD_MS,
        "recovery_margin_ms": MARGIN_MS,
        "recovery_p99_window_s": WINDOW_S,
        "by_peer": by_peer,
    }
