"""`make bench-growth`: how every cost grows with the number of users (issue 25), one fresh state per size.

GROWTH_SIZES (default 1000000,3000000,10000000) lists the sizes. Only the default set writes
bench/results/growth.json, growth.png and the README's growth block; any other set (a smoke
run, GROWTH_SIZES=20000) writes to GROWTH_OUT (default .run/bench-growth/). README "Growth"
section of bench/README.md says what each figure means and what "fresh" is.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.settings import Settings
from adapters.store import make_redis
from bench import growth_data as data
from bench import growth_phases as phases
from bench.common import LOAD_CPUS, PINNING, PORT_BASE, RESULTS, ROOT, SUT_CPUS, machine
from bench.growth_cpu import CpuMeter, per_event_us, wait_per_s
from bench.growth_redis import RedisRun, check_projection, sampled_bytes_per_user
from bench.growth_report import write
from bench.projection import bench_name
from bench.readers import RATE, Reader, quiet
from bench.servers import gunicorn
from bench.steal import StealSampler

log = logging.getLogger("bench")
DEFAULT_SIZES = "1000000,3000000,10000000"
SIZES = [int(s) for s in os.environ.get("GROWTH_SIZES", DEFAULT_SIZES).split(",") if s.strip()]
# GROWTH_PUBLISH=1 publishes another set of sizes too (e.g. 1000000,10000000 when time is short).
# GROWTH_REBUILD_ONLY=1: consume, rebuild and gc only (no reconcile, no backfill), never published:
# a diagnosis of the rebuild's rate at 10M in half the time.
REBUILD_ONLY = os.environ.get("GROWTH_REBUILD_ONLY", "") not in ("", "0")
FULL = not REBUILD_ONLY and (
    os.environ.get("GROWTH_SIZES", DEFAULT_SIZES).replace(" ", "") == DEFAULT_SIZES
    or os.environ.get("GROWTH_PUBLISH", "") not in ("", "0")
)
OUT = RESULTS if FULL else Path(os.environ.get("GROWTH_OUT", str(ROOT / ".run" / "bench-growth")))
SEED = int(os.environ.get("GROWTH_SEED", "25"))
# The baseline (readers alone) lasts as long as the rebuild did, up to this many seconds.
BASELINE_MAX_S = float(os.environ.get("GROWTH_BASELINE_MAX_S", "30"))
# The commands' own logs (the replay's governor decisions among them), kept per size after the
# size's temporary directory is gone: never under bench/results.
LOGS = ROOT / ".run" / "bench-growth" / "logs"
REDIS_DB = 3  # the growth run's own Redis database (bench: 1, memory_layout: 2), flushed per size
DATABASE = "ums_growth"  # its own MariaDB database, same table as the AddService's


def settings_for(users: int, workdir: Path) -> Settings:
    base = Settings.from_env()
    tag = uuid.uuid4().hex[:6]
    return replace(
        base,
        redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}",
        topic=f"growth-{users}-{tag}",
        group_id=f"growth-{tag}",
        key_prefix="bench",  # the key length `make bench` measures memory with
        mysql_database=DATABASE,
        metrics_port=0,
        heartbeat_file=str(workdir / "consumer.health"),
    )


def run_size(users: int, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every measurement at one size, on a fresh state; the growth.json row and the details."""
    settings = settings_for(users, workdir)
    client = make_redis(settings, timeout_s=60)
    client.flushdb()  # our own database only
    redis_run = RedisRun(client, users)
    pool = data.buffer_pool_for(users)
    consumer: phases.Command | None = None
    try:
        details: dict[str, Any] = {}
        started = time.monotonic()
        loading = data.fresh_database(settings, users)  # MariaDB fills the table while we produce
        before = redis_run.used()
        events = data.produce(settings, users, SEED)
        details["produce_s"] = round(time.monotonic() - started, 1)
        data.loaded(loading)
        details["produce_and_mysql_load_s"] = round(time.monotonic() - started, 1)
        log.info("%d users: %d events produced in %.1f s, MySQL loaded beside it by %.1f s", users, events,
                 details["produce_s"], details["produce_and_mysql_load_s"])  # fmt: skip
        latency: dict[str, Any] = {}
        redis_run.reset_latency()
        consumer, consumed = phases.consume(settings, events, workdir)
        latency["consume"] = redis_run.latency()
        used = redis_run.used() - before
        details["sampled_bytes_per_user"] = sampled_bytes_per_user(settings, users, SEED)
        check_projection(settings, users, SEED)
        details["consume"] = consumed
        row, more = measure_under_reads(settings, users, events, workdir, redis_run, latency)
        details.update(more)
        row.update(
            users=users,
            events=events,
            consumer_eps_from_start=round(consumed["eps_from_start"]),
            consumer_eps_steady=round(consumed["eps_steady"]),
            redis_used_bytes=used,
            redis_bytes_per_user=round(used / users, 1),
            redis_latency_events=latency,
        )
        return row, details
    finally:
        if consumer is not None:
            consumer.stop()
        redis_run.restore()
        data.restore_buffer_pool(pool)
        client.flushdb()
        data.delete_topics(settings)
        data.drop_database(settings)


def measure_under_reads(
    settings: Settings, users: int, events: int, workdir: Path, redis_run: RedisRun, latency: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """replay, baseline, backfill, gc and reconcile, with the API read at 500 req/s throughout."""
    api = gunicorn(settings, PORT_BASE + 5)
    names = [bench_name(u) for u in random.Random(SEED).sample(range(users), min(users, 20_000))]
    reader = Reader(api.base, names, workdir)
    steal = StealSampler().start()
    try:
        time.sleep(2.0)  # connections and workers warm before the first measured stretch
        redis_run.reset_latency()
        meter = CpuMeter(make_redis(settings, timeout_s=60), api.proc.pid)
        before, waited = meter.snapshot(), meter.waits()
        rebuild = phases.to_flip(settings, ["replay"], workdir)
        rebuild_cpu = per_event_us(before, meter.snapshot(), rebuild.cpu_s, events)
        waits = {"rebuild": wait_per_s(waited, meter.waits(), rebuild.seconds)}
        latency["rebuild"] = redis_run.latency()
        waited = meter.waits()
        baseline = quiet(min(rebuild.seconds, BASELINE_MAX_S))
        waits["baseline"] = wait_per_s(waited, meter.waits(), baseline[1] - baseline[0])
        redis_run.reset_latency()
        collected, deleted = phases.gc(settings, workdir)  # the generation the replay replaced
        latency["gc"] = redis_run.latency()
        reconciled, backfill = (None, None) if REBUILD_ONLY else from_mysql(settings, workdir, redis_run, latency)
    finally:
        steal.stop()
        reader.stop()
        api.stop()
    runs = {"rebuild": rebuild, "gc": collected, "reconcile": reconciled, "backfill": backfill}
    windows = {name: reader.window(run.started, run.ended) for name, run in runs.items() if run is not None}
    windows["baseline"] = reader.window(*baseline)
    if deleted < users:
        log.warning("gc deleted %d keys, fewer than the %d of a whole generation", deleted, users)
    row = {
        "rebuild_to_flip_s": round(rebuild.since_start("flip"), 2),
        # The replay's own end: its wait for readers to move, then the sweep `gc` just timed.
        "rebuild_total_s": round(rebuild.seconds + settings.generation_cache_s * 2 + 0.5 + collected.seconds, 2),
        "rebuild_events_per_s": round(events / rebuild.since_start("flip")),
        "readers_p99_ms_during_rebuild": windows["rebuild"].p99_ms,
        "readers_max_ms_during_rebuild": windows["rebuild"].max_ms,
        "readers_p99_ms_baseline": windows["baseline"].p99_ms,
        "failed_reads": sum(w.failed for w in windows.values()),
        "reconcile_s": round(reconciled.seconds, 2) if reconciled else None,
        "reconcile_peak_rss_mib": reconciled.peak_rss_mib if reconciled else None,
        "backfill_s": round(backfill.seconds, 2) if backfill else None,
        "backfill_peak_rss_mib": backfill.peak_rss_mib if backfill else None,
        "gc_s": round(collected.seconds, 2),
        "readers_p99_ms_during_gc": windows["gc"].p99_ms,
    }
    details = {
        "readers": {name: w.as_dict() for name, w in windows.items()},
        "readers_rate": RATE,
        "replay_peak_rss_mib": rebuild.peak_rss_mib,
        "rebuild_cpu_us_per_event": rebuild_cpu,
        # What the readers waited behind: a server runnable but without a core (s per s).
        "run_queue_wait_s_per_s": waits,
        # A rate that falls at one size only: was the machine's CPU stolen in that phase?
        "cpu_steal": {name: steal.between(run.started, run.ended) for name, run in runs.items() if run is not None},
        "gc_deleted_keys": deleted,
        "reconcile_exit": reconciled.returncode if reconciled else None,
        "reconcile_output": reconciled.output[-1500:] if reconciled else None,
    }
    return row, details


def from_mysql(
    settings: Settings, workdir: Path, redis_run: RedisRun, latency: dict[str, Any]
) -> tuple[phases.Run, phases.Run]:
    """`reconcile`, then `backfill --from-mysql` to its flip, each with Redis's latency events."""
    redis_run.reset_latency()
    reconciled = phases.reconcile(settings, workdir)
    latency["reconcile"] = redis_run.latency()
    redis_run.reset_latency()
    backfill = phases.to_flip(settings, ["backfill", "--from-mysql"], workdir)
    latency["backfill"] = redis_run.latency()
    return reconciled, backfill


def keep_logs(workdir: Path, into: Path, users: int) -> None:
    try:
        into.mkdir(parents=True, exist_ok=True)
        for path in workdir.glob("*.log"):
            shutil.copyfile(path, into / f"{users}-{path.name}")
    except OSError as error:  # a full disk must not hide what the size itself raised
        log.warning("could not keep the %d users' logs in %s: %r", users, into, error)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_at_start = os.getloadavg()
    logs = LOGS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")  # this run's, apart from earlier runs'
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for users in sorted(SIZES):
        with tempfile.TemporaryDirectory() as workdir:
            started = time.monotonic()
            try:
                row, more = run_size(users, Path(workdir))
            finally:
                keep_logs(Path(workdir), logs, users)
            more["size_total_s"] = round(time.monotonic() - started, 1)
            log.info("%d users done in %.0f s: %s", users, more["size_total_s"], row)
        rows.append(row)
        details[str(users)] = more
        # A long run that fails at 10M keeps what the smaller sizes measured.
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "growth-partial.json").write_text(json.dumps({"sizes": rows, "details": details}, indent=2) + "\n")
    by_users = {r["users"]: r for r in rows}
    ratio = (
        by_users[10_000_000]["rebuild_events_per_s"] / by_users[1_000_000]["rebuild_events_per_s"]
        if 1_000_000 in by_users and 10_000_000 in by_users
        else None
    )
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "sizes": rows,
        "rebuild_rate_ratio_10m_vs_1m": ratio,
        "seed": SEED,
        "details": details,
        "load_average_start": load_at_start,
        "load_average_end": os.getloadavg(),
        "pinning": {"enabled": PINNING, "system_under_test_cpus": SUT_CPUS, "load_generator_cpus": LOAD_CPUS},
    }
    print(write(results, OUT, readme=FULL))
    (OUT / "growth-partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
