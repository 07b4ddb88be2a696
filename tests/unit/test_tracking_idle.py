"""adapters/tracking.py's check of idle pool connections, on real sockets (socketpair): what Redis
closing a connection looks like to the cache, and what it must not take for it."""

from __future__ import annotations

import socket
import threading

import redis

from adapters.tracking import drop_closed_idle


class Idle:
    """A pool connection as redis-py holds it: `_sock`, and `disconnect()`."""

    def __init__(self) -> None:
        self._sock, self.server = socket.socketpair()

    def disconnect(self) -> None:
        self._sock.close()
        self._sock = None  # type: ignore[assignment]


class Pool:
    def __init__(self, *conns: Idle) -> None:
        self._available_connections = list(conns)
        self._lock = threading.RLock()


def test_an_idle_connection_the_server_closed_or_wrote_to_is_dropped():
    quiet, closed, talking = Idle(), Idle(), Idle()
    closed.server.close()  # what Redis's `timeout` or CLIENT KILL does
    talking.server.sendall(b"-ERR\r\n")  # unasked: dropped too (a reconnect, and the cache emptied)
    drop_closed_idle(Pool(quiet, closed, talking))  # type: ignore[arg-type]
    assert closed._sock is None and talking._sock is None
    assert quiet._sock is not None


def test_nothing_idle_or_nothing_closed_drops_nothing():
    drop_closed_idle(Pool())  # type: ignore[arg-type]
    conns = Idle(), Idle()
    drop_closed_idle(Pool(*conns))  # type: ignore[arg-type]
    assert all(conn._sock is not None for conn in conns)


def test_the_pinned_redis_py_keeps_idle_connections_where_the_check_reads_them():
    pool = redis.ConnectionPool()  # nothing connects here
    assert pool._available_connections == [] and pool._lock is not None
    assert pool.make_connection()._sock is None  # a socket only once connected
