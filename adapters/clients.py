"""Every client ums-find opens is built here, once per role, with that role's timeouts.

The roles differ in how long they may wait and in who they are: the API answers a person
(a Redis call must fail fast so the MySQL fallback can answer instead), the consumer waits
through outages (longer calls, retried by its loop), and operator commands move big batches.
Each role logs in to Redis as its own ACL user (the API's may only read; docs/security.md),
and every link gets the TLS settings here: Redis (rediss:// + CA), MySQL (CA, host name
checked), Kafka (security.protocol, SASL, CA; adapters/kafka.py).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from adapters.kafka import consumer_config, kafka_error_logger, librdkafka_logger, producer_config, security_config
from adapters.mysql import BATCH_READ_TIMEOUT_S, MySQLUsers, make_pool
from adapters.settings import Settings
from adapters.store import ProjectionStore, is_cluster_url, make_redis
from adapters.tracking import TrackedReads

log = logging.getLogger(__name__)


class Role(enum.Enum):
    API = "api"  # GET /user/<name>: settings.redis_timeout_s (0.25 s), then the fallback
    CONSUMER = "consumer"  # the consume loop: 2 s, and its loop retries with backoff
    ADMIN = "admin"  # replay, backfill, reconcile, gc, tests, benchmarks: 10 s per Redis call, 60 s MySQL


ADMIN_REDIS_TIMEOUT_S = 10.0
CONSUMER_REDIS_TIMEOUT_S = 2.0


def redis_timeout(settings: Settings, role: Role) -> float:
    return {
        Role.API: settings.redis_timeout_s,
        Role.CONSUMER: CONSUMER_REDIS_TIMEOUT_S,
        Role.ADMIN: ADMIN_REDIS_TIMEOUT_S,
    }[role]


def redis_credentials(settings: Settings, role: Role) -> tuple[str, str]:
    """(ACL user, password) of a role; ("", "") logs in as nobody (a Redis without AUTH)."""
    return {
        Role.API: (settings.redis_api_user, settings.redis_api_password),
        Role.CONSUMER: (settings.redis_consumer_user, settings.redis_consumer_password),
        Role.ADMIN: (settings.redis_admin_user, settings.redis_admin_password),
    }[role]


def redis_security(settings: Settings, role: Role) -> dict[str, Any]:
    """redis-py keyword arguments: the role's ACL user, and CA + host name checks for rediss://."""
    user, password = redis_credentials(settings, role)
    options: dict[str, Any] = {}
    if user:
        options["username"] = user
    if password:
        options["password"] = password
    if settings.redis_url.startswith("rediss"):  # rediss:// or rediss+cluster://
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if settings.redis_ca_file:
            options["ssl_ca_certs"] = settings.redis_ca_file
    return options


def redis_client(settings: Settings, role: Role) -> redis.Redis:
    return make_redis(settings, timeout_s=redis_timeout(settings, role), **redis_security(settings, role))


def projection_store(settings: Settings, role: Role) -> ProjectionStore:
    return ProjectionStore(redis_client(settings, role), settings.key_prefix, settings.value_format)


def tracked_reads(settings: Settings, count: Callable[[str], None] | None = None) -> TrackedReads | None:
    """The API's read cache with a Redis client of its own (None: off, or a Cluster); `count` is told each outcome."""
    if settings.api_read_cache_entries <= 0 or is_cluster_url(settings.redis_url):
        return None
    reads = TrackedReads(settings.api_read_cache_entries, count)
    client = make_redis(
        settings,
        timeout_s=redis_timeout(settings, Role.API),
        redis_connect_func=reads.on_connect,
        **redis_security(settings, Role.API),
    )
    return reads.bind(ProjectionStore(client, settings.key_prefix, settings.value_format))


def mysql_users(settings: Settings, writer: bool = False, role: Role = Role.API) -> MySQLUsers:
    """The AddService's table: read-only user unless `writer` (the AddService stand-in, tests).

    ADMIN (reconcile, backfill) reads with BATCH_READ_TIMEOUT_S: its queries ask for a thousand
    names at once against tables of millions, where the API's 0.3 s is a budget for one.
    """
    if role is Role.ADMIN:
        settings = replace(settings, mysql_read_timeout_s=max(settings.mysql_read_timeout_s, BATCH_READ_TIMEOUT_S))
    return MySQLUsers(make_pool(settings, writer=writer, **mysql_security(settings)))


def mysql_security(settings: Settings) -> dict[str, Any]:
    """PyMySQL keyword arguments for TLS: the server's certificate and host name checked against the CA."""
    if not settings.mysql_ssl_ca:
        return {}
    return {"ssl_ca": settings.mysql_ssl_ca, "ssl_verify_cert": True, "ssl_verify_identity": True}


def kafka_consumer(settings: Settings, **extra: Any) -> Consumer:
    # librdkafka's own log lines go through `logging` too, so they come out as JSON.
    config = {"error_cb": kafka_error_logger(), **consumer_config(settings, **extra)}
    return Consumer(config, logger=librdkafka_logger())


def kafka_producer(settings: Settings, **extra: Any) -> Producer:
    config = {"error_cb": kafka_error_logger(), **producer_config(settings, **extra)}
    return Producer(config, logger=librdkafka_logger())


def kafka_admin(settings: Settings) -> AdminClient:
    config = {"error_cb": kafka_error_logger(), **security_config(settings)}
    return AdminClient(config, logger=librdkafka_logger())
