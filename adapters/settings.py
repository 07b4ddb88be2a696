"""The one settings object, built from the environment by the entry points only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PREFIX = "UMS_"


def _env_name(name: str) -> str:
    return PREFIX + name.upper()


@dataclass(frozen=True)
class Settings:
    """Every knob of ums-find; each field `x` is read from the variable `UMS_X`."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Kafka security, passed to librdkafka (consumer, dead-letter producer, replay, admin, AddService
    # stand-in): security.protocol, sasl.mechanism/username/password, ssl.ca.location.
    kafka_security_protocol: str = "PLAINTEXT"  # production: SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"  # used with SASL_PLAINTEXT / SASL_SSL only
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_ca_file: str = ""  # empty: the system's CA store
    topic: str = "com.glarimy.ums.user.add"
    dlq_topic: str = ""  # empty: "<topic>.dlq"
    group_id: str = "ums-find"
    group_instance_id: str = ""  # empty: dynamic membership
    session_timeout_ms: int = 10_000
    topic_partitions: int = 6
    redis_url: str = "redis://127.0.0.1:6379/0"  # rediss:// for TLS; credentials go in the *_USER/_PASSWORD below
    redis_ca_file: str = ""  # CA that signed the server's certificate (rediss://); empty: the system's store
    # One Redis ACL user per role (adapters/clients.py); empty user: Redis's `default` user.
    redis_api_user: str = ""
    redis_api_password: str = field(default="", repr=False)
    redis_consumer_user: str = ""
    redis_consumer_password: str = field(default="", repr=False)
    redis_admin_user: str = ""
    redis_admin_password: str = field(default="", repr=False)
    key_prefix: str = "ums"
    # How the consumer, replay and repairs write a user's value (adapters/values.py): "compact"
    # (~120 B per user in Redis) or "text" (~168 B, readable in redis-cli). Every reader reads
    # both; set "text" while rolling out from a release that reads text only (README "Upgrading").
    value_format: str = "compact"
    redis_timeout_s: float = 0.25
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_database: str = "glarimy"
    mysql_user: str = "ums_find_ro"
    mysql_password: str = field(default="", repr=False)
    mysql_ssl_ca: str = ""  # set: TLS, server certificate and host name verified against this CA
    # Short: with both sources down the API must answer 503 in under a second.
    mysql_connect_timeout_s: float = 0.3
    mysql_read_timeout_s: float = 0.3
    mysql_pool_size: int = 8
    # The collation of ums_users.name: which names are one user (docs/decisions.md "Names").
    # MariaDB's default is utf8mb4_general_ci, MySQL 8.x's utf8mb4_0900_ai_ci.
    name_collation: str = "utf8mb4_general_ci"
    addservice_mysql_user: str = ""  # empty: mysql_user
    addservice_mysql_password: str = field(default="", repr=False)
    batch_size: int = 2000
    batch_timeout_s: float = 0.05
    max_event_bytes: int = 64 * 1024
    # A `since` ahead of its message's timestamp by more than this is dead-lettered, and
    # `ums-find topics` makes the broker refuse timestamps this far ahead of its clock
    # (message.timestamp.after.max.ms): no producer clock can pin a user.
    max_clock_skew_s: float = 300.0
    log_level: str = "INFO"
    log_json: bool = True
    heartbeat_file: str = "/tmp/ums-find-consumer.health"
    ready_max_lag: int = 10_000
    metrics_port: int = 9102
    generation_cache_s: float = 1.0
    # How often each consumer asks the broker for the event topic's id (consumer/lineage.py).
    topic_check_s: float = 10.0
    # A rebuild renews its claim every third of this; past it, consumers stop writing to
    # its generation and the sweep may delete it.
    rebuild_lease_s: float = 30.0
    # replay, backfill, gc and reconcile lower their CPU priority by this much (os.nice) so the
    # API and the consumer on the same host come first; 0 keeps it. Measured: docs/decisions.md
    # "Readers first". Between containers the cgroup's CPU weight decides, not niceness.
    maintenance_nice: int = 10
    # Processes a Kafka replay splits its partitions across (at most one per partition with
    # work); 1 replays in the CLI's own process. Measured: docs/decisions.md "Replay workers".
    replay_workers: int = 1
    # A replay or backfill writes at most this many events (or MySQL rows) a second on average,
    # split among its workers; 0: as fast as it can. For a rebuild beside readers on shared cores
    # (consumer/pace.py; measured: docs/decisions.md "Readers first").
    rebuild_events_per_s: float = 0.0
    # A replay or backfill slows down while Redis answers its probe more than this late (90th
    # percentile, above the fastest probe), and speeds up again when it does not; 0: never
    # (consumer/governor.py; measured: docs/decisions.md "Readers first").
    rebuild_redis_delay_ms: float = 2.0
    # With the governor, a rebuild starts at this many events a second and rises from there while
    # Redis answers promptly; 0: full speed from the start (docs/decisions.md "A slow start").
    rebuild_start_events_per_s: float = 20_000.0
    negative_cache_s: float = 2.0
    breaker_reset_s: float = 2.0
    cache_max_age_s: int = 5
    # Fresh reads (?min_since=, Cache-Control: no-cache) waiting on MySQL at once, per API worker;
    # one past it waits up to fresh_read_wait_s for a slot, then gets 503 + Retry-After
    # (docs/decisions.md "Read your own writes"). 0: none reach MySQL.
    fresh_read_limit: int = 2
    fresh_read_wait_s: float = 0.01
    # Read-repair writes users found only in MySQL into Redis from the API: it needs a Redis
    # user that may write, so it is off and the API's user is read-only (docs/security.md).
    read_repair: bool = False
    # gunicorn, read by api/gunicorn.conf.py (docs/decisions.md "API worker model").
    api_bind: str = "0.0.0.0:8080"
    # /metrics, /livez and /readyz answer here only, never on api_bind. Empty: api_bind's port + 1000.
    api_ops_bind: str = ""
    api_workers: int = 0  # 0: one per usable core (CPU affinity, capped by the cgroup's CPU quota)
    api_worker_class: str = "gthread"
    api_threads: int = 4
    # A request needs at most the Redis and MySQL timeouts (under a second); 30 s means a hang.
    api_timeout: int = 30
    api_graceful_timeout: int = 20
    api_keepalive: int = 5
    # A request whose headers are not all in this long after a thread started reading them has its
    # connection cut (api/slow_clients.py): a client that sends a byte, then nothing, held a thread
    # for as long as it liked. 0: no deadline.
    api_header_timeout_s: float = 2.0
    # sys.setswitchinterval in each worker (ms); 0 keeps Python's 5 ms. issue 22 measures it (bench/tail.py).
    api_switch_interval_ms: float = 0.0
    # How much lower the serving threads' scheduling priority is than the worker's main thread (nice
    # steps, 0-19): under overload the main thread answers the 503s on the same core, and at 4x of the
    # capacity it fell behind them (docs/decisions.md "The main thread's priority": 0, 5 and 10 measured).
    api_pool_nice: int = 5
    # Recycle a worker after this many requests (0: never). Off by default: with one worker per core a
    # recycle leaves the core without a worker for ~170 ms (p99 2.6 -> 144 ms in that 6 s at 1,000 req/s,
    # docs/decisions.md "Worker recycling"); the jitter keeps several workers from restarting together.
    api_max_requests: int = 0
    api_max_requests_jitter: int = 2000
    # The app answers 414/431 (problem+json) past 4 KB of path / 16 KB of headers; gunicorn's
    # own limits sit above that. Never 0 (unlimited): from_env refuses it.
    api_limit_request_line: int = 8190
    api_limit_request_fields: int = 100
    api_limit_request_field_size: int = 8190
    api_access_log: str = "-"
    # Plain lookups answered as plain WSGI before Flask (api/hot.py): the same answers at less CPU.
    # Off: Flask answers every request (the same replies; for comparing, or if one ever differs).
    api_hot_path: bool = True
    # Users' values read on a Redis connection per thread, not through redis-py's client and pool
    # (adapters/direct_reads.py): the same reads at less CPU. Off: through the client, as before.
    api_direct_reads: bool = True
    # Admission control before the app (api/admission.py, docs/decisions.md "Admission control").
    # CoDel-style: when no request of an interval waited under the target, requests that waited
    # over twice the target are shed (503). 0 turns shedding off. The default: measured (same section).
    api_queue_target_ms: float = 10.0
    api_queue_interval_ms: float = 100.0
    # While not yet overloaded, an arriving request is shed only if it would wait longer than this (the
    # start of an overload, before an interval has ended to say so). 0: the interval, as CoDel has it.
    api_queue_onset_ms: float = 0.0
    # Whether a thread still sheds, on its wait in the worker's queue, a request the arrival stage let in
    # (CoDel's drop at dequeue). Off: what was let in is served, up to the deadline; a wait before the
    # worker saw the request (a proxy's X-Request-Start) is still judged when a thread takes it, and where
    # no arrival stage runs (another worker class, TLS in gunicorn) a thread sheds as before.
    api_shed_at_dequeue: bool = False
    # While overloaded, an arriving request that already waited longer than this before the worker saw it
    # (in the kernel's buffers: UMS_API_KERNEL_STAMPS) is shed on arrival. 0: twice the target, as a thread
    # would shed it. The default: measured against twice the target (docs/decisions.md "The arrival wait").
    api_arrival_wait_ms: float = 5.0
    # A request's wait counts from when the kernel received its first byte (Linux's SO_TIMESTAMPNS on
    # the listening sockets), so time spent in the accept queue and in a kept-alive connection's buffer
    # is seen; off (or where the platform has no such stamp): from the worker's hand-off to its pool.
    api_kernel_stamps: bool = True
    # A request that waited longer than this is answered 503 unserved: below a client's usual
    # 1 s timeout, so the answer still finds its client. 0: no deadline.
    api_request_deadline_ms: float = 500.0
    api_shed_retry_after_s: int = 1
    # Count a proxy's X-Request-Start in the wait: only behind a proxy that sets it on every request,
    # replacing a client's, with a clock that agrees with ours. Off by default: a client can send it,
    # and a stamp from the past sheds or expires requests (and marks the interval overloaded).
    api_trust_request_start: bool = False
    # Users each API worker keeps in memory, invalidated by Redis (CLIENT TRACKING; adapters/tracking.py,
    # docs/decisions.md "Read cache"). 0: every read asks Redis. Single Redis only (not Cluster).
    api_read_cache_entries: int = 0

    def __post_init__(self) -> None:
        for name, top in BOUNDED.items():
            value = getattr(self, name)
            if not 0 < value <= top:
                raise ValueError(f"{_env_name(name)}={value} must be between 1 and {top} (0 means unlimited)")
        if not 0 <= self.maintenance_nice <= 19:
            raise ValueError(f"UMS_MAINTENANCE_NICE={self.maintenance_nice} must be between 0 and 19")
        if not self.rebuild_events_per_s >= 0:  # also NaN, which float() accepts
            raise ValueError(f"UMS_REBUILD_EVENTS_PER_S={self.rebuild_events_per_s} must be >= 0 (0: no pace)")
        if not self.rebuild_redis_delay_ms >= 0:
            raise ValueError(
                f"UMS_REBUILD_REDIS_DELAY_MS={self.rebuild_redis_delay_ms} must be >= 0 (0: never slow down)"
            )
        if not self.rebuild_start_events_per_s >= 0:
            raise ValueError(
                f"UMS_REBUILD_START_EVENTS_PER_S={self.rebuild_start_events_per_s} must be >= 0 (0: full speed at once)"
            )
        if self.value_format not in ("compact", "text"):
            raise ValueError(f"UMS_VALUE_FORMAT={self.value_format!r} must be compact or text")
        if self.api_read_cache_entries < 0:
            raise ValueError(f"UMS_API_READ_CACHE_ENTRIES={self.api_read_cache_entries} must be >= 0 (0: off)")
        if self.api_header_timeout_s < 0:
            raise ValueError(f"UMS_API_HEADER_TIMEOUT_S={self.api_header_timeout_s} must be >= 0 (0: no deadline)")
        if not 0 <= self.api_pool_nice <= 19:
            raise ValueError(f"UMS_API_POOL_NICE={self.api_pool_nice} must be 0-19 (nice steps; 0: the main thread's)")
        if not self.topic_check_s > 0:
            raise ValueError(f"UMS_TOPIC_CHECK_S={self.topic_check_s} must be > 0")
        if self.api_switch_interval_ms < 0:
            raise ValueError(f"UMS_API_SWITCH_INTERVAL_MS={self.api_switch_interval_ms} must be >= 0 (0: Python's)")

    def __repr__(self) -> str:
        """Every setting, secrets masked: a password set shows as '***', a URL without its password."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRETS:
                value = "***" if value else ""
            elif f.name == "redis_url":
                value = redact_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @property
    def ops_bind(self) -> str:
        """Where the API's operational endpoints listen (never the public port)."""
        if self.api_ops_bind:
            return self.api_ops_bind
        host, _, port = self.api_bind.rpartition(":")
        return f"{host}:{int(port) + 1000}"

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"

    @property
    def max_skew_ms(self) -> int:
        return int(self.max_clock_skew_s * 1000)

    @property
    def writer_user(self) -> str:
        return self.addservice_mysql_user or self.mysql_user

    @property
    def writer_password(self) -> str:
        return self.addservice_mysql_password if self.addservice_mysql_user else self.mysql_password

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `UMS_*` variables; `overrides` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, str(f.type), raw)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def variables(cls) -> dict[str, Any]:
        """Environment variable name -> default, for documentation and tests."""
        return {_env_name(f.name): f.default for f in fields(cls)}


# Settings that hold a secret: never printed (repr, logs, /readyz).
SECRETS = frozenset(
    {
        "kafka_sasl_password",
        "redis_api_password",
        "redis_consumer_password",
        "redis_admin_password",
        "mysql_password",
        "addservice_mysql_password",
    }
)
# gunicorn request limits: 0 would mean unlimited; the tops are gunicorn's own maxima.
BOUNDED = {"api_limit_request_line": 8190, "api_limit_request_fields": 32768, "api_limit_request_field_size": 65536}


def redact_url(url: str) -> str:
    """`url` with any password replaced by '***' (redis://user:pw@host -> redis://user:***@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _convert(name: str, type_name: str, raw: str) -> Any:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"{_env_name(name)}={raw!r} is not a valid {type_name}") from None
    return raw
