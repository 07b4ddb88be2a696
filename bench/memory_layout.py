"""Redis memory per user and write speed by value layout, on the same users in one run (issue 25).

    text      <prefix>:<gen>:<canonical> -> "time,partition,offset,±delta,phone,name" (UMS_VALUE_FORMAT=text)
    compact   the same key -> the compact bytes of adapters/values.py (UMS_VALUE_FORMAT=compact, the default)
    bucketed  (a prototype, not the product) <prefix>:<gen>:b:<crc32(canonical) % buckets> hash, field
              <canonical>, the text value; ~64 users per bucket, under hash-max-listpack-entries (128) and
              -value (64 B), so every bucket stays a listpack. The fence is per field inside one key.

Text and compact alternate for ROUNDS rounds (drift hits both alike); writes go through the product's
store.apply (encode + fenced script), timed from the first call to the last reply, Redis's own CPU
per user from INFO commandstats.

python -m bench.memory_layout [USERS]  (default 1,000,000; uses Redis database 2, flushed)
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
import zlib
from dataclasses import replace

from adapters.lua import NEWER
from adapters.settings import Settings
from adapters.store import KEYS_PER_CALL, ProjectionStore, make_redis
from adapters.values import format_value
from bench.common import RESULTS
from bench.projection import bench_name
from domain import Name, PhoneNumber, User, UserAdded, Version
from domain.model import from_epoch_ms

log = logging.getLogger(__name__)
USERS_PER_BUCKET = 64
BATCH = 2000

# The production fence's comparison (adapters/lua.py), on a field of a bucket instead of a key.
FENCED_HSET = (
    NEWER
    + """
local applied = 0
for i = 1, #KEYS do
  local field, new = ARGV[2 * i - 1], ARGV[2 * i]
  local cur = redis.call('HGET', KEYS[i], field)
  if not cur or newer(new, cur) then
    redis.call('HSET', KEYS[i], field, new)
    applied = applied + 1
  end
end
return applied
"""
)


def events(count: int) -> list[UserAdded]:
    base = 1_700_000_000_000
    return [
        UserAdded(
            User(Name(bench_name(i)), PhoneNumber(9_000_000_000 + i), from_epoch_ms(base)), Version(base + i, 0, i)
        )
        for i in range(count)
    ]


def used(client) -> int:  # type: ignore[no-untyped-def]
    return int(client.info("memory")["used_memory"])


def script_usec(client) -> float:  # type: ignore[no-untyped-def]
    stats = client.info("commandstats")
    return float(sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")))


def run_store(settings: Settings, batch: list[list[UserAdded]], count: int, value_format: str) -> dict[str, float]:
    client = make_redis(settings, timeout_s=60)
    client.flushdb()
    client.config_resetstat()
    before = used(client)
    store = ProjectionStore(client, "mem", value_format)
    started = time.perf_counter()
    for chunk in batch:
        store.apply(chunk, 1)
    seconds = time.perf_counter() - started
    return {
        "bytes_per_user": (used(client) - before) / count,
        "eps": count / seconds,
        "redis_script_us_per_user": script_usec(client) / count,
        "keys": client.dbsize(),
    }


def run_bucketed(settings: Settings, batch: list[list[UserAdded]], count: int) -> dict[str, float]:
    client = make_redis(settings, timeout_s=60)
    client.flushdb()
    before = used(client)
    script = client.register_script(FENCED_HSET)
    buckets = max(1, count // USERS_PER_BUCKET)
    started = time.perf_counter()
    for chunk in batch:
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(chunk), KEYS_PER_CALL):
            keys: list[str] = []
            args: list[str] = []
            for event in chunk[start : start + KEYS_PER_CALL]:
                keys.append(f"mem:1:b:{zlib.crc32(event.key.encode()) % buckets}")
                args += [event.key, format_value(event)]
            script(keys=keys, args=args, client=pipe)
        pipe.execute()
    seconds = time.perf_counter() - started
    encodings: dict[str, int] = {}
    for key in client.scan_iter(match="mem:1:b:*", count=1000):
        enc = client.object("encoding", key)
        encodings[str(enc)] = encodings.get(str(enc), 0) + 1
        if len(encodings) > 1 or sum(encodings.values()) >= 2000:
            break
    return {
        "bytes_per_user": (used(client) - before) / count,
        "eps": count / seconds,
        "keys": client.dbsize(),
        "encodings_sampled": encodings,  # type: ignore[dict-item]
    }


ROUNDS = 3


def main(count: int = 1_000_000) -> None:
    base = Settings.from_env()
    settings = replace(base, redis_url=base.redis_url.rsplit("/", 1)[0] + "/2")
    all_events = events(count)
    batch = [all_events[i : i + BATCH] for i in range(0, count, BATCH)]
    runs: dict[str, list[dict[str, float]]] = {"text": [], "compact": []}
    for r in range(ROUNDS):
        for value_format in ("text", "compact") if r % 2 == 0 else ("compact", "text"):
            runs[value_format].append(run_store(settings, batch, count, value_format))
            log.info("round %d %s: %s", r + 1, value_format, runs[value_format][-1])
    results: dict[str, object] = {"users": count, "rounds": ROUNDS, "runs": runs}
    for name, rows in runs.items():
        results[name] = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
    results["compact_vs_text_eps_paired"] = [
        c["eps"] / t["eps"] for c, t in zip(runs["compact"], runs["text"], strict=True)
    ]
    results["bucketed"] = run_bucketed(settings, batch, count)
    make_redis(settings, timeout_s=60).flushdb()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory-layout.json").write_text(json.dumps(results, indent=2) + "\n")
    log.info("%s", json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main(*(int(a) for a in sys.argv[1:2]))
