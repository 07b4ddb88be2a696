"""`make bench`: every benchmark on the real local stack, as ratios against baselines of the same run.

BENCH_SCALE shrinks the run (1.0: 1M events; 0.1 for a quick look); BENCH_ROUNDS sets how
many alternating rounds make each median (default 2).
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.api import api_suite
from bench.common import RESULTS, ROUNDS, SCALE, machine, median
from bench.projection import projection_suite
from bench.report import write

log = logging.getLogger("bench")


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
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    count = int(1_000_000 * SCALE)
    # The naive loop commits every message synchronously (about 130/s here): a smaller sample.
    projection = projection_suite(ROUNDS, count, naive_count=max(1000, int(3000 * SCALE)))
    with tempfile.TemporaryDirectory() as workdir:
        api = api_suite(projection["settings"], count, max(ROUNDS, 3), Path(workdir))
    results = summarise(projection, api)
    print(write(results, RESULTS))


if __name__ == "__main__":
    main()
