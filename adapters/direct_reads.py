"""The API's user reads on a connection per thread: redis-py's own connection, without its client and pool.

A `GET` through redis-py's client borrows a pooled connection under a lock, polls it for stray
data (one more system call), wraps the command in a retry and records telemetry around it; on
the API's one core that was about a third of the read's CPU (docs/decisions.md "Direct reads").
Here each thread keeps one `redis.Connection` built exactly as the pool builds them (same class,
so TLS, ACL user, database and timeouts are the pool's) and sends `GET` on it. Nothing else
changes: the same errors reach the finder (a timeout opens its breaker), a connection that
failed is dropped, and a stale one (Redis restarted since its last read) is replaced once, as
the client's pool reconnects one it finds closed. Single Redis only; on Cluster the client routes
by slot.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from adapters.store import ProjectionStore
from adapters.values import Stored, parse_value


class DirectReads:
    """`get(canonical, generation)` as ProjectionStore's, on a connection of the calling thread's own."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self._pool: redis.ConnectionPool = store.client.connection_pool
        self._local = threading.local()

    @classmethod
    def of(cls, store: ProjectionStore) -> DirectReads | None:
        """Direct reads on this store's Redis (None: a Cluster client, whose pool is per node)."""
        client = store.client
        if isinstance(client, redis.RedisCluster) or not isinstance(client.connection_pool, redis.ConnectionPool):
            return None
        return cls(store)

    def get(self, canonical: str, generation: int) -> Stored | None:
        raw = self._get(self.store.key(generation, canonical))
        return parse_value(raw, canonical) if raw is not None else None

    def _get(self, key: str) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return self._first_read(key)
        try:
            return self._send(conn, key)
        except redis.TimeoutError:
            self._drop(conn)
            raise  # a hang: no second wait, the finder's breaker counts it
        except (redis.ConnectionError, OSError):
            # A connection that worked before and fails now was most likely closed under it
            # (a Redis restart, an idle timeout): one more try on a new one, as the client's pool
            # reconnects a connection it finds closed when lending it.
            self._drop(conn)
            return self._first_read(key)

    def _first_read(self, key: str) -> Any:
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        try:
            value = self._send(conn, key)
        except redis.ResponseError:
            self._local.conn = conn  # an error reply: the new connection is in step, and kept
            raise
        except BaseException:
            conn.disconnect()
            raise
        self._local.conn = conn
        return value

    @staticmethod
    def _send(conn: Any, key: str) -> Any:
        # An error reply (ResponseError: WRONGTYPE, NOPERM) leaves the connection in step: it stays.
        conn.send_command("GET", key)
        return conn.read_response()

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        conn.disconnect()
