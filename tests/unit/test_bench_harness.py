"""The benchmark harness's arithmetic: what counts as an error, capacity at the SLO, percentiles, the table."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import loadgen
from bench.common import percentile, spread
from bench.growth_redis import slow_commands
from bench.loadgen import Point, summarise
from bench.openloop import LADDER, SLO_MS, at_ladder_top, capacity
from bench.report import table


def vegeta_row(code: int, latency_ms: float, error: str = "") -> str:
    """One line of `vegeta encode -to=csv`: timestamp, code, latency (ns), bytes out, bytes in, error, body..."""
    return f"1764000000000000000,{code},{int(latency_ms * 1e6)},0,17,{error},e30=,,0,GET,http://x/user/a,\n"


# What every results file says of its run, before any figure.
RUN = {"date": "2026-11-25 10:27 UTC", "machine": "2 cores", "scale": 1.0, "events": 1_000_000, "rounds": 5}


def point(rate: int, p99_ms: float, errors: int = 0) -> Point:
    return Point(rate, 1.0, 100, 1.0, p99_ms, p99_ms, p99_ms, errors)


def test_an_expected_404_is_not_an_error_but_a_timeout_and_a_wrong_status_are() -> None:
    rows = [vegeta_row(404, 1.0, "404 Not Found") for _ in range(8)]
    rows += [vegeta_row(0, 5000.0, "Get: timeout"), vegeta_row(200, 2.0)]
    got = summarise("".join(rows), rate=10, duration_s=1.0, expect=404)
    assert got.requests == 10
    assert got.errors == 2
    assert got.codes == {"404": 8, "0": 1, "200": 1}
    assert got.max_ms == 5000.0
    assert got.p50_ms == 1.0


def test_every_attack_runs_vegeta_with_its_collector_deferred_to_the_memory_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # On its one core vegeta's collections of a 1,000-connection heap took 11-15 ms every ~150 ms,
    # which the overload steps' p99 counted as the server's (docs/decisions.md "The client's collector").
    calls: list[dict[str, Any]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append({"command": command, **kwargs})
        return subprocess.CompletedProcess(command, 0, stdout="")

    monkeypatch.setattr(loadgen, "vegeta", lambda: "vegeta")
    monkeypatch.setattr(loadgen, "subprocess", SimpleNamespace(run=run))  # loadgen's calls only
    loadgen.attack_csv(tmp_path / "targets", 100, 1.0, tmp_path)
    env = next(c for c in calls if "attack" in c["command"]).get("env", {})
    assert {k: env.get(k) for k in ("GOGC", "GOMEMLIMIT")} == loadgen.VEGETA_GC
    assert env.get("PATH")  # the rest of the environment goes along


def test_vegeta_collects_at_its_memory_limit_unless_told_otherwise() -> None:
    """The defaults, unless BENCH_VEGETA_GOGC / BENCH_VEGETA_GOMEMLIMIT were set for this run."""
    assert loadgen.VEGETA_GC["GOGC"] == os.environ.get("BENCH_VEGETA_GOGC", "off")
    assert loadgen.VEGETA_GC["GOMEMLIMIT"] == os.environ.get("BENCH_VEGETA_GOMEMLIMIT", "2GiB")


def test_capacity_is_the_highest_rate_held_with_every_lower_rate_held() -> None:
    points = {250: point(250, 3.0), 500: point(500, SLO_MS + 1), 750: point(750, 4.0)}
    assert capacity(points) == 250  # 750 held, but 500 did not: a dip is not capacity
    assert capacity({250: point(250, 3.0, errors=1)}) == 0  # errors fail the SLO whatever the latency
    assert capacity({250: point(250, 3.0), 500: point(500, SLO_MS)}) == 500  # <= SLO holds


def test_a_series_that_held_the_ladders_top_in_any_round_is_named_as_a_lower_bound() -> None:
    rounds = {"ours": [2000, 2250], "ceiling": [3000, LADDER[-1]], "seed": [1000, 1000]}
    assert at_ladder_top(rounds) == ["ceiling"]
    assert at_ladder_top({"ours": [LADDER[-2]]}) == []


def test_the_table_says_which_figures_a_series_at_the_ladders_top_bounds() -> None:
    results = {
        **RUN,
        "api_capacity_at_p99_10ms_rps": 2250.0,
        "ceiling_capacity_at_p99_10ms_rps": 4000.0,
        "api_capacity_vs_ceiling": 0.5625,
        "capacity_at_ladder_top": ["ceiling"],
    }
    rows = {line.split(" | ")[0]: line for line in table(results).splitlines() if line.startswith("| ")}
    assert (
        "at most: ceiling held the ladder's top"
        in rows["| API capacity / fixed-body Flask ceiling's capacity at p99 <= 10 ms"]
    )
    assert "at least: ceiling held the ladder's top" in rows["| ceiling capacity at p99 <= 10 ms, open loop (req/s)"]
    assert "ladder" not in rows["| API capacity at p99 <= 10 ms, open loop (req/s)"]  # ours was measured


def test_percentile_is_nearest_rank_and_spread_ignores_missing_rounds() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.9) == 100.0
    assert math.isnan(percentile([], 50))
    assert spread([3.0, float("nan"), 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_the_table_shows_spreads_and_whether_a_target_is_met() -> None:
    results = {
        **RUN,
        "api_vs_ceiling": 0.57,
        "freshness_p99_ms": 9.5,
        "freshness_p99_ms_spread": {"median": 9.5, "min": 8.0, "max": 12.25, "n": 5},
    }
    text = table(results)
    assert "(same gunicorn; ours answers lookups before Flask) | 0.57 | >= 0.75 | **no** |" in text
    assert "| freshness p99 at 20 events/s (ms) | 9.50 (8.00-12.25) | <= 10 | yes |" in text
    assert "projection throughput" not in text  # keys a run did not produce are left out


def test_a_miss_the_rounding_would_hide_gets_three_decimals() -> None:
    results = {"date": "d", "machine": "m", "scale": 1.0, "events": 1, "rounds": 5}
    assert "| 0.749 | >= 0.75 | **no** |" in table({**results, "api_vs_ceiling": 0.7489})
    assert "| 0.75 | >= 0.75 | yes |" in table({**results, "api_vs_ceiling": 0.7501})
    assert "| 0.74 | >= 0.75 | **no** |" in table({**results, "api_vs_ceiling": 0.7412})


def test_growth_cpu_per_event_names_each_process_and_leaves_the_rest_to_other() -> None:
    from bench.growth_cpu import per_event_us

    before = {"redis": 10.0, "api": 5.0, "machine": 100.0, "kafka": 1.0}
    after = {"redis": 13.0, "api": 9.0, "machine": 125.0, "kafka": 3.0}
    shares = per_event_us(before, after, command_s=12.0, events=1_000_000)
    # 25 s of the machine's busy time: 3 Redis, 4 API, 2 broker, 12 the command, 4 nobody named.
    assert shares == {"redis": 3.0, "api": 4.0, "kafka": 2.0, "command": 12.0, "other": 4.0}


def test_growth_run_queue_wait_is_seconds_per_second_by_process() -> None:
    from bench.growth_cpu import wait_per_s

    before = {"redis": 1.0, "api": 2.0, "kafka": 0.5}
    after = {"redis": 5.0, "api": 12.0}  # the broker was gone by the end: left out, not guessed
    assert wait_per_s(before, after, seconds=10.0) == {"redis": 0.4, "api": 1.0}


def test_growth_run_queue_wait_counts_the_children_that_waited_for_a_core() -> None:
    import os
    import subprocess
    import sys

    from bench.growth_cpu import run_queue_wait_s

    # Three processes spinning 0.2 s each on one core: each waits for the others. Each says so
    # on stdout, then blocks on stdin, so it is still there to be read.
    spin = (
        "import sys, time\nt = time.process_time() + 0.2\nwhile time.process_time() < t: pass\n"
        "print(1, flush=True)\nsys.stdin.read()"
    )
    core = {min(os.sched_getaffinity(0))}
    spinners = []
    for _ in range(3):
        spinners.append(subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        os.sched_setaffinity(spinners[-1].pid, core)
    try:
        for each in spinners:
            assert each.stdout is not None and each.stdout.readline().strip() == b"1"
        assert run_queue_wait_s(os.getpid()) >= 0.1  # this process's own threads count too
    finally:
        for each in spinners:
            each.communicate(timeout=10)
    assert run_queue_wait_s(2**22 + 1) == 0.0  # above the largest pid Linux allows: no such process


def test_the_slow_log_is_summed_up_by_command_name_with_its_worst() -> None:
    entries = [
        {"id": 3, "start_time": 1764900000, "duration": 71_000, "command": b"EVALSHA abc 2 k1 k2"},
        {"id": 2, "start_time": 1764900001, "duration": 2_500, "command": b"evalsha abc 2 k3 k4"},
        {"id": 1, "start_time": 1764900002, "duration": 3_000, "command": "GET u:1:alice"},
    ]
    assert slow_commands(entries) == {
        "EVALSHA": {"count": 2, "max_ms": 71.0},
        "GET": {"count": 1, "max_ms": 3.0},
    }
    assert slow_commands([]) == {}


def test_the_table_pairs_the_capacities_round_by_round_beside_the_ratio_of_their_medians() -> None:
    def rounds(*held: float) -> list[dict[str, object]]:
        return [{"capacity_rps": h, "steal": {}} for h in held]

    results = {
        **RUN,
        "api_capacity_at_p99_10ms_rps": 3000.0,
        "ceiling_capacity_at_p99_10ms_rps": 3000.0,
        "api_capacity_vs_ceiling": 1.0,
        "api_open_loop_rounds": {"ours": rounds(2250, 3000, 3000), "ceiling": rounds(3000, 4500, 0)},
    }
    rows = {line.split(" | ")[0]: line for line in table(results).splitlines() if line.startswith("| ")}
    # 0.75 and 0.67; the round where the ceiling held nothing has no ratio.
    paired = rows["| the same, paired round by round (median of the rounds' ratios)"]
    assert paired.split(" | ")[1] == "0.71 (0.67-0.75)"
    assert "paired" not in table({**RUN, "api_capacity_vs_ceiling": 1.0})
