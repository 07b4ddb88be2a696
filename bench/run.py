"""`make bench`: every benchmark on the real local stack, as ratios against baselines of the same run.

BENCH_SCALE shrinks the run (1.0: 1M events; 0.1 for a quick look); BENCH_ROUNDS sets how
many alternating rounds make each median (default 5; BENCH_QUICK=1: 0.1 and 2).
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from bench.api import api_suite
from bench.common import LOAD_CPUS, PINNING, RESULTS, ROUNDS, SCALE, SUT_CPUS, machine, median, spread
from bench.freshness import freshness_suite
from bench.overload_report import overload_keys
from bench.projection import projection_suite
from bench.report import write
from bench.servers import seed_versions
from bench.steal import StealSampler

log = logging.getLogger("bench")


def open_loop_keys(open_loop: dict[str, Any]) -> dict[str, Any]:
    """Open-loop latency (vegeta, fixed rates): p99 by rate per peer, capacity at p99 <= 10 ms, spreads."""
    table, capacity = open_loop["table"], open_loop["capacity"]
    p99 = {name: {rate: row["p99_ms"] for rate, row in rows.items()} for name, rows in table.items()}
    return {
        "api_open_loop_p99_ms": p99["ours"],
        "api_open_loop_p99_ms_by_peer": p99,
        "api_open_loop": table,
        "api_capacity_at_p99_10ms_rps": capacity["ours"]["median"],
        # The same run's medians; None when the ceiling held not even the lowest rate.
        "api_capacity_vs_ceiling": (
            capacity["ours"]["median"] / capacity["ceiling"]["median"] if capacity["ceiling"]["median"] else None
        ),
        "seed_capacity_at_p99_10ms_rps": capacity["seed"]["median"],
        "ceiling_capacity_at_p99_10ms_rps": capacity["ceiling"]["median"],
        "api_capacity_at_p99_10ms_rps_spread": capacity["ours"],
        "seed_capacity_at_p99_10ms_rps_spread": capacity["seed"],
        "ceiling_capacity_at_p99_10ms_rps_spread": capacity["ceiling"],
        "api_open_loop_slo_ms": open_loop["slo_ms"],
        # Named here, a series' capacity is at least its figure, and a ratio over it at most its figure.
        "capacity_at_ladder_top": open_loop["capacity_at_ladder_top"],
    }


def freshness_keys(fresh: dict[str, Any]) -> dict[str, Any]:
    """Event produced (delivery report) -> first GET that returns it: after the fetch change, and before."""
    keys: dict[str, Any] = {}
    for variant, prefix in (("after", "freshness"), ("before", "freshness_before")):
        low, loaded = fresh[f"{variant}_low"], fresh[f"{variant}_loaded"]
        keys[f"{prefix}_p50_ms"] = low["p50_ms"]["median"]
        keys[f"{prefix}_p99_ms"] = low["p99_ms"]["median"]
        keys[f"{prefix}_max_ms"] = low["max_ms"]
        keys[f"{prefix}_loaded_p50_ms"] = loaded["p50_ms"]["median"]
        keys[f"{prefix}_loaded_p99_ms"] = loaded["p99_ms"]["median"]
        keys[f"{prefix}_loaded_max_ms"] = loaded["max_ms"]
        keys[f"{prefix}_p99_ms_spread"] = low["p99_ms"]
        keys[f"{prefix}_loaded_p99_ms_spread"] = loaded["p99_ms"]
        keys[f"{prefix}_background_eps"] = fresh[f"{variant}_background_eps"]["median"]
    keys["freshness_samples_ms"] = {
        v: {c: fresh[f"{v}_{c}"]["samples"] for c in ("low", "loaded")} for v in ("before", "after")
    }
    return keys


def summarise(projection: dict[str, Any], api: dict[str, Any]) -> dict[str, Any]:
    p = {k: median([r["eps"] for r in v]) for k, v in projection["runs"].items()}
    ours = projection["runs"]["ours"]
    runs = api["runs"]
    rps = {k: median([r.rps for r in v]) for k, v in runs.items()}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "scale": SCALE,
        "rounds": ROUNDS,
        "events": projection["count"],
        "projection_eps": p["ours"],
        "projection_ceiling_eps": p["ceiling"],
        "projection_naive_eps": p["naive"],
        "projection_quix_eps": p["quix"],
        "projection_vs_ceiling": p["ours"] / p["ceiling"],
        "projection_vs_naive": p["ours"] / p["naive"],
        "projection_vs_quix": p["ours"] / p["quix"],
        "redis_bytes_per_user": median([r["bytes_per_user"] for r in ours]),
        "projection_text_eps": p["ours_text"],
        "projection_compact_vs_text": median(
            [c["eps"] / t["eps"] for c, t in zip(ours, projection["runs"]["ours_text"], strict=True)]
        ),
        "redis_bytes_per_user_text": median([r["bytes_per_user"] for r in projection["runs"]["ours_text"]]),
        "consumer_rss_mb": median([r["rss_kb"] for r in ours]) / 1024,
        "api_rps": rps["ours"],
        "api_ceiling_rps": rps["ceiling"],
        "api_seed_rps": rps["seed"],
        "api_vs_ceiling": rps["ours"] / rps["ceiling"],
        "api_vs_seed": rps["ours"] / rps["seed"],
        "api_p50_ms": median([r.p50_ms for r in runs["ours"]]),
        "api_p99_ms": median([r.p99_ms for r in runs["ours"]]),
        "api_errors": sum(r.errors for r in runs["ours"]),
        "fallback_rps": rps["fallback"],
        "fallback_p50_ms": median([r.p50_ms for r in runs["fallback"]]),
        "fallback_p99_ms": median([r.p99_ms for r in runs["fallback"]]),
        "not_found_rps": rps["not_found"],
        "not_found_p50_ms": median([r.p50_ms for r in runs["not_found"]]),
        "not_found_p99_ms": median([r.p99_ms for r in runs["not_found"]]),
        "api_worker_cpu_shares": api["balance"],
        "rebuild_1m_s": api["rebuild"]["seconds"],
        "rebuild_with_cleanup_s": api["rebuild"]["with_cleanup_seconds"],
        "rebuild_failed_reads": api["rebuild"]["failed_reads"],
        "rebuild_reads": api["rebuild"]["reads"],
        "rebuild_readers_p99_ms": api["rebuild"]["p99_ms"],
        "rebuild_readers_max_ms": api["rebuild"]["max_ms"],
        "projection_eps_spread": spread([r["eps"] for r in ours]),
        "api_rps_spread": spread([r.rps for r in runs["ours"]]),
        "api_seed_rps_spread": spread([r.rps for r in runs["seed"]]),
        "api_ceiling_rps_spread": spread([r.rps for r in runs["ceiling"]]),
        **open_loop_keys(api["open_loop"]),
        **overload_keys(api["overload"]),
    }


def rounds_with_steal(open_loop: dict[str, Any], steal: StealSampler) -> dict[str, list[dict[str, Any]]]:
    """Each peer's capacity round by round, with the CPU steal the round had."""
    return {
        name: [
            {"capacity_rps": held, "steal": steal.between(*window)}
            for held, window in zip(open_loop["capacity_rounds"][name], open_loop["windows"][name], strict=True)
        ]
        for name in open_loop["capacity_rounds"]
    }


def versions() -> dict[str, dict[str, str]]:
    """What each peer ran: ours and the ceiling share this venv; the seed has its own (the article's)."""
    import importlib.metadata as md

    ours = {p: md.version(p) for p in ("flask", "gunicorn", "redis", "PyMySQL", "confluent-kafka")}
    return {"ours": ours, "ceiling": ours, "seed": seed_versions()}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_at_start = os.getloadavg()
    count = int(1_000_000 * SCALE)
    with StealSampler() as steal:
        # The naive loop commits every message synchronously (about 130/s here): a smaller sample.
        projection = projection_suite(ROUNDS, count, naive_count=max(1000, int(3000 * SCALE)))
        with tempfile.TemporaryDirectory() as workdir:
            api = api_suite(projection["settings"], count, max(ROUNDS, 3), Path(workdir))
        fresh = freshness_suite(ROUNDS)
    results = {
        **summarise(projection, api),
        **freshness_keys(fresh),
        "versions": versions(),
        # A busy machine shows here first: compare these before trusting a ratio.
        "load_average_start": load_at_start,
        "load_average_end": os.getloadavg(),
        "cpu_steal": steal.whole(),
        "api_open_loop_rounds": rounds_with_steal(cast(dict[str, Any], api["open_loop"]), steal),
        "pinning": {"enabled": PINNING, "system_under_test_cpus": SUT_CPUS, "load_generator_cpus": LOAD_CPUS},
    }
    print(write(results, RESULTS))


if __name__ == "__main__":
    main()
