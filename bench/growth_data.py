"""Growth runs' data: a seeded history of 2.5 events per user into a fresh topic, the users' rows into MySQL.

The history, for `n` users (names as `make bench` writes them, bench_name(u)), in three phases
whose Kafka timestamps never overlap (the producer is flushed and the clock moves on between):

    puts        n       every user once: phone 9_000_000_000 + u, since BASE + u
    tombstones  n // 4  a null value keyed by the name, for a quarter of the users
    updates     the rest (n + n // 4 at 2.5 events per user): every user once, a quarter twice,
                with phone 9_100_000_000 + u and since BASE + DAY + u (re-adding the removed ones)

Which users get tombstones and the order of the updates come from a seeded permutation
(u = (a * k + b) mod n), so the log's contents are the same on every run; the end state is
known without reading it back: every user alive with its updated phone and since. MySQL gets
exactly that state (n rows), so `reconcile` sees no drift and `backfill` writes the same users.
Partitions are chosen round robin, as a null key spreads them.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import subprocess
import time
from collections.abc import Iterator

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from adapters.kafka import ensure_topics, producer_config, security_config
from adapters.settings import Settings
from bench.common import ROOT

log = logging.getLogger("bench")
PARTITIONS = 6
BASE_MS = 1_700_000_000_000
DAY_MS = 86_400_000
SCHEMA = ROOT / "services" / "mysql" / "schema.sql"
CHUNK = 60_000
MAX_QUEUED = 1_000_000
PUT = b'{"name":"Bench User %08d","phone":%d,"since":%d}'


def events_for(users: int) -> int:
    return users * 5 // 2


def permutation(users: int, seed: int) -> tuple[int, int]:
    """(a, b) with a coprime to `users`: k -> (a * k + b) mod users visits every user once per `users` steps."""
    rng = random.Random(seed)
    while True:
        a = rng.randrange(1, max(users, 2))
        if math.gcd(a, users) == 1:
            return a, rng.randrange(users)


Phase = Iterator[tuple[bytes | None, bytes | None]]


def history(users: int, seed: int) -> Iterator[Phase]:
    """The three phases, each an iterator of (key, value) (never a list: 10M users), in produce order."""
    a, b = permutation(users, seed)
    yield ((None, PUT % (u, 9_000_000_000 + u, BASE_MS + u)) for u in range(users))
    removed = users // 4
    yield ((b"Bench User %08d" % ((a * k + b) % users), None) for k in range(removed))
    updates = events_for(users) - users - removed
    yield (
        (None, PUT % (u, 9_100_000_000 + u, BASE_MS + DAY_MS + u))
        for u in ((a * k + b) % users for k in range(updates))
    )


def produce(settings: Settings, users: int, seed: int) -> int:
    """The whole history into a fresh topic (6 partitions); return how many events."""
    ensure_topics(settings, partitions=PARTITIONS)
    config = {"linger.ms": 100, "batch.num.messages": 50_000, "queue.buffering.max.messages": 2_000_000}
    producer = Producer(producer_config(settings, **config))
    sent = 0
    for phase in history(users, seed):
        while chunk := list(itertools.islice(phase, CHUNK)):
            # produce_batch: one call per partition's slice (a call per message costs 3-5 us here)
            for partition in range(PARTITIONS):
                messages = [{"key": k, "value": v} for k, v in chunk[partition::PARTITIONS]]
                _queue(producer, settings.topic, messages, partition)
            sent += len(chunk)
        if producer.flush(600):
            raise RuntimeError("the broker did not acknowledge every event")
        time.sleep(0.01)  # the next phase's timestamps come strictly later (versions order the phases)
    return sent


def _queue(producer: Producer, topic: str, messages: list[dict[str, bytes | None]], partition: int) -> None:
    while len(producer) > MAX_QUEUED:  # keep the local queue below its limit: no BufferError, no retries
        producer.poll(0.05)
    queued = producer.produce_batch(topic, messages, partition=partition)
    if queued != len(messages):
        failed = next((m for m in messages if "_error" in m), {})
        raise RuntimeError(f"produce_batch queued {queued} of {len(messages)}: {failed.get('_error')!r}")


def delete_topics(settings: Settings) -> None:
    admin = AdminClient(security_config(settings))  # type: ignore[arg-type]
    for future in admin.delete_topics([settings.topic, settings.dead_letter_topic], request_timeout=60).values():
        try:
            future.result()
        except Exception as exc:  # a missing DLQ is fine; anything else is only disk left behind
            log.warning("could not delete a topic: %s", exc)


def _mariadb_command(sql: str, database: str) -> list[str]:
    sock = os.path.join(os.environ.get("UMS_STACK_DIR", ".run/stack"), "mariadb", "mysqld.sock")
    command = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-N", "-B", "-e", sql]
    return command + ([database] if database else [])


def mariadb(sql: str, database: str = "") -> str:
    """Run SQL as MariaDB's root through the stack's socket (socket auth: this machine's root user)."""
    out = subprocess.run(_mariadb_command(sql, database), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"mariadb: {out.stderr.strip()}")
    return out.stdout.strip()


def fresh_database(settings: Settings, users: int) -> subprocess.Popen[bytes]:
    """Drop and create `settings.mysql_database` with the AddService's table, and start filling it with
    the end state; the caller waits for the returned process (it runs while the events are produced).

    Rows are generated by the server itself (the Sequence engine), in primary-key order:
    10M rows need no client round trips and no file.
    """
    db = settings.mysql_database
    mariadb(f"DROP DATABASE IF EXISTS {db}; " + SCHEMA.read_text().replace("glarimy", db))
    mariadb(f"GRANT SELECT ON {db}.* TO '{settings.mysql_user}'@'%'")
    sql = (
        "SET time_zone = '+00:00'; SET unique_checks = 0; "
        "INSERT INTO ums_users (name, phone, since) SELECT CONCAT('Bench User ', LPAD(seq, 8, '0')), "
        f"9100000000 + seq, FROM_UNIXTIME(({BASE_MS + DAY_MS} + seq) / 1000) FROM seq_0_to_{max(users - 1, 0)}"
    )
    return subprocess.Popen(_mariadb_command(sql, db), stderr=subprocess.PIPE)


def loaded(loading: subprocess.Popen[bytes]) -> None:
    _, err = loading.communicate()
    if loading.returncode:
        raise RuntimeError(f"loading ums_users failed: {err.decode(errors='replace')}")


def drop_database(settings: Settings) -> None:
    mariadb(f"DROP DATABASE IF EXISTS {settings.mysql_database}")


def buffer_pool_for(users: int) -> int | None:
    """A larger InnoDB buffer pool for this run if the table would not fit (None: leave it)."""
    current = int(mariadb("SELECT @@innodb_buffer_pool_size"))
    wanted = users * 200  # ~100 B a row with its index pages, twice for the reads beside it
    if wanted <= current:
        return None
    mariadb(f"SET GLOBAL innodb_buffer_pool_size = {wanted}")
    return current


def restore_buffer_pool(size: int | None) -> None:
    if size is not None:
        mariadb(f"SET GLOBAL innodb_buffer_pool_size = {size}")
