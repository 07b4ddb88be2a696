"""`make bench-readers`: what a rebuild costs the readers, by script size, CPU priority and replay workers (issue 25).

One fresh state (READERS_USERS users, 2.5 events each, as the growth run makes them), the live
consumer running, the API (pinned as in `make bench`) read at 500 req/s open loop throughout.
Each variant (users per fenced-script call : niceness of the rebuild process [: replay worker
processes, 1 if not given [: UMS_REBUILD_EVENTS_PER_S, 0 if not given [: UMS_REBUILD_REDIS_DELAY_MS,
the setting's default if not given, 0 for no governor [: UMS_REBUILD_START_EVENTS_PER_S, the
setting's default if not given, 0 for full speed at once [: the governor's CREEP, its value if not
given, 1 for none [: CREEP_AFTER_S, its value if not given]]]]]]; READERS_VARIANTS) runs `replay`
to its flip; `gc` then deletes the generation it replaced, and a quiet stretch as long as the
rebuild (up to 20 s) is that variant's baseline. Rounds run the variants in alternating order.
Redis's own view per variant: EVALSHA microseconds per call (INFO commandstats, reset before
each rebuild) and its latency events (commands >= 2 ms, bench/growth_redis.py).
Results go to readers-first.json in READERS_OUT (.run/bench-readers), each rebuild's log to
logs/<run>/ there (at DEBUG, every governor window; READERS_LOG_LEVEL sets another level); nothing published is touched.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.settings import Settings
from adapters.store import make_redis
from bench import growth_data as data
from bench import growth_phases as phases
from bench.common import PORT_BASE, ROOT, machine
from bench.growth import settings_for
from bench.growth_redis import RedisRun
from bench.projection import bench_name
from bench.readers import Reader, quiet
from bench.servers import gunicorn
from consumer.governor import CREEP, CREEP_AFTER_S

log = logging.getLogger("bench")
USERS = int(os.environ.get("READERS_USERS", "400000"))
# keys per call : niceness [: replay workers, 1 if not given [: pace in events/s, 0 (none) if not given
# [: governor's target in ms, the default if not given, 0: none [: its start in events/s, the default
# if not given, 0: full speed at once [: its creep, CREEP if not given, 1: none [: the creep's wait in s
# from the first chunk, CREEP_AFTER_S if not given]]]]]]; a variant is named as written.
GOVERNOR = [
    str(value) for value in (Settings.rebuild_redis_delay_ms, Settings.rebuild_start_events_per_s, CREEP, CREEP_AFTER_S)
]
DEFAULTS = ["", "", "1", "0", *GOVERNOR]
SPECS = os.environ.get("READERS_VARIANTS", "200:0,50:0,800:0,200:10,50:10").split(",")
VARIANTS = [(parts := spec.split(":")) + DEFAULTS[len(parts) :] for spec in SPECS]
ROUNDS = int(os.environ.get("READERS_ROUNDS", "2"))
OUT = Path(os.environ.get("READERS_OUT", str(ROOT / ".run" / "bench-readers")))
SEED = 25


def evalsha_usec_per_call(redis_run: RedisRun) -> float:
    stats = redis_run.client.info("commandstats").get("cmdstat_evalsha", {})
    return round(float(stats.get("usec_per_call", 0.0)), 1)


def one(
    settings: Any, variant: list[str], events: int, reader: Reader, redis_run: RedisRun, workdir: Path, logs: Path
) -> dict:
    """One variant's rebuild to its flip, its gc and its baseline; the rebuild's log kept in `logs`, in run order."""
    keys, nice, workers, pace, delay_ms, start, creep, after = variant
    program = [sys.executable, "-m", "bench.replay_as", keys, nice, workers, pace, delay_ms, start, creep, after]
    redis_run.client.config_resetstat()
    redis_run.reset_latency()
    try:
        rebuild = phases.to_flip(settings, ["replay"], workdir, program)
    finally:  # a rebuild that failed or never flipped is the one whose log is wanted
        if (output := workdir / "replay.log").exists():
            logs.mkdir(parents=True, exist_ok=True)
            kept = logs / f"{len(list(logs.iterdir())):02d}-{':'.join(variant)}.log"
            kept.write_text(output.read_text(errors="replace"))
    usec = evalsha_usec_per_call(redis_run)
    latency = redis_run.latency()
    phases.gc(settings, workdir)
    baseline = quiet(min(rebuild.seconds, 20))
    row = {
        "keys_per_call": int(keys),
        "nice": int(nice),
        "workers": int(workers),
        "pace_events_per_s": float(pace),
        "redis_delay_ms": float(delay_ms),
        "start_events_per_s": float(start),
        "creep": float(creep),
        "creep_after_s": float(after),
        "to_flip_s": round(rebuild.seconds, 2),
        "events_per_s": round(events / rebuild.seconds),
        "windows": {"rebuild": (rebuild.started, rebuild.ended), "baseline": baseline},
        "evalsha_usec_per_call": usec,
        "redis_latency_events": latency,
    }
    log.info("%s", row)
    return row


def with_reads(row: dict, reader: Reader) -> dict:
    """The readers' figures for a variant's windows (the reader's requests are read back at its stop)."""
    during, calm = reader.window(*row["windows"]["rebuild"]), reader.window(*row["windows"]["baseline"])
    return row | {
        "readers_p99_ms": during.p99_ms,
        "readers_max_ms": during.max_ms,
        "readers_p50_ms": during.p50_ms,
        "baseline_p99_ms": calm.p99_ms,
        "failed_reads": during.failed + calm.failed,
        "failed_at_s": during.failed_at_s,  # seconds into the rebuild
        "max_send_gap_ms": during.max_send_gap_ms,  # the reader's own pause, and when (a burst follows)
        "max_send_gap_at_s": during.max_send_gap_at_s,
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_at_start = os.getloadavg()
    logs = OUT / "logs" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # this run's, apart from earlier runs'
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        settings = settings_for(USERS, workdir)
        client = make_redis(settings, timeout_s=60)
        client.flushdb()
        redis_run = RedisRun(client, USERS)
        consumer = api = reader = None
        try:
            events = data.produce(settings, USERS, SEED)
            consumer, _ = phases.consume(settings, events, workdir)
            api = gunicorn(settings, PORT_BASE + 6)
            names = [bench_name(u) for u in random.Random(SEED).sample(range(USERS), min(USERS, 20_000))]
            reader = Reader(api.base, names, workdir)
            time.sleep(2.0)  # connections and workers warm before the first measured stretch
            for r in range(ROUNDS):
                for spec, variant in list(zip(SPECS, VARIANTS, strict=True))[:: 1 if r % 2 == 0 else -1]:
                    row = one(settings, variant, events, reader, redis_run, workdir, logs)
                    rows.append({"round": r, "variant": spec, **row})
        finally:
            for part in (reader, api, consumer):
                if part is not None:
                    part.stop()
            if reader is not None:
                rows = [with_reads(row, reader) for row in rows]
            redis_run.restore()
            client.flushdb()
            data.delete_topics(settings)
    summary = {}
    figures = (
        "to_flip_s",
        "events_per_s",
        "readers_p99_ms",
        "readers_max_ms",
        "baseline_p99_ms",
        "evalsha_usec_per_call",
    )
    for spec in SPECS:
        mine = [r for r in rows if r["variant"] == spec]
        summary[spec] = {k: round(statistics.median(r[k] for r in mine), 2) for k in figures} | {
            "failed_reads": sum(r["failed_reads"] for r in mine)
        }
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"users": USERS, "events": data.events_for(USERS), "machine": machine(), "rows": rows,
              "summary": summary, "load_average_start": load_at_start, "load_average_end": os.getloadavg()}  # fmt: skip
    (OUT / "readers-first.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
