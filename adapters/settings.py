"""The one settings object, built from the environment by the entry points only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

PREFIX = "UMS_"


def _env_name(name: str) -> str:
    return PREFIX + name.upper()


@dataclass(frozen=True)
class Settings:
    """Every knob of ums-find; each field `x` is read from the variable `UMS_X`."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = "com.glarimy.ums.user.add"
    dlq_topic: str = ""  # empty: "<topic>.dlq"
    group_id: str = "ums-find"
    group_instance_id: str = ""  # empty: dynamic membership
    session_timeout_ms: int = 10_000
    topic_partitions: int = 6
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "ums"
    redis_timeout_s: float = 0.25
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_database: str = "glarimy"
    mysql_user: str = "ums_find_ro"
    mysql_password: str = field(default="", repr=False)
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
    # A message timestamp ahead of the consumer's clock, or a `since` ahead of the message
    # timestamp, by more than this is dead-lettered: no producer clock can pin a user.
    max_clock_skew_s: float = 300.0
    log_level: str = "INFO"
    log_json: bool = True
    heartbeat_file: str = "/tmp/ums-find-consumer.health"
    ready_max_lag: int = 10_000
    metrics_port: int = 9102
    generation_cache_s: float = 1.0
    # A rebuild renews its claim every third of this; past it, consumers stop writing to
    # its generation and the sweep may delete it.
    rebuild_lease_s: float = 30.0
    negative_cache_s: float = 2.0
    breaker_reset_s: float = 2.0
    cache_max_age_s: int = 5
    # gunicorn, read by api/gunicorn.conf.py (docs/decisions.md "API worker model").
    api_bind: str = "0.0.0.0:8080"
    api_workers: int = 0  # 0: one per CPU plus one; set it in a container (CPUs of the node, not the limit)
    api_worker_class: str = "gthread"
    api_threads: int = 4
    # A request needs at most the Redis and MySQL timeouts (under a second); 30 s means a hang.
    api_timeout: int = 30
    api_graceful_timeout: int = 20
    api_keepalive: int = 5
    # Recycle workers now and then (leaks, fragmentation); the jitter keeps them from restarting together.
    api_max_requests: int = 20_000
    api_max_requests_jitter: int = 2000
    # The app answers 414/431 (problem+json) past 16 KB; gunicorn's own limits sit above that.
    api_limit_request_line: int = 0
    api_limit_request_fields: int = 100
    api_limit_request_field_size: int = 32_768
    api_access_log: str = "-"

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
