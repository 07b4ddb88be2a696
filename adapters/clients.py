"""Every client ums-find opens is built here, once per role, with that role's timeouts.

The roles differ only in how long they may wait: the API answers a person (a Redis call
must fail fast so the MySQL fallback can answer instead), the consumer waits through
outages (longer calls, retried by its loop), and operator commands move big batches.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import redis
from confluent_kafka import Consumer, Producer

from adapters.kafka import consumer_config, producer_config
from adapters.mysql import MySQLUsers, make_pool
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis

log = logging.getLogger(__name__)


class Role(enum.Enum):
    API = "api"  # GET /user/<name>: settings.redis_timeout_s (0.25 s), then the fallback
    CONSUMER = "consumer"  # the consume loop: 2 s, and its loop retries with backoff
    ADMIN = "admin"  # replay, backfill, reconcile, gc, tests, benchmarks: 10 s per call


ADMIN_REDIS_TIMEOUT_S = 10.0
CONSUMER_REDIS_TIMEOUT_S = 2.0


def redis_timeout(settings: Settings, role: Role) -> float:
    return {
        Role.API: settings.redis_timeout_s,
        Role.CONSUMER: CONSUMER_REDIS_TIMEOUT_S,
        Role.ADMIN: ADMIN_REDIS_TIMEOUT_S,
    }[role]


def redis_client(settings: Settings, role: Role) -> redis.Redis:
    return make_redis(settings, timeout_s=redis_timeout(settings, role))


def projection_store(settings: Settings, role: Role) -> ProjectionStore:
    return ProjectionStore(redis_client(settings, role), settings.key_prefix)


def mysql_users(settings: Settings, writer: bool = False) -> MySQLUsers:
    """The AddService's table: read-only user unless `writer` (the AddService stand-in, tests)."""
    return MySQLUsers(make_pool(settings, writer=writer))


def kafka_consumer(settings: Settings, **extra: Any) -> Consumer:
    # librdkafka's own log lines go through `logging` too, so they come out as JSON.
    return Consumer(consumer_config(settings, **extra), logger=logging.getLogger("librdkafka"))


def kafka_producer(settings: Settings, **extra: Any) -> Producer:
    return Producer(producer_config(settings, **extra), logger=logging.getLogger("librdkafka"))
