"""adapters/tracking.py's check of idle pool connections, on real sockets (socketpair): what Redis
closing a connection looks like to the cache, and what it must not take for it."""

from __future__ import annotations

import socket

import redis

from adapters.tracking import closed_idle


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


def test_a_connection_the_server_closed_is_found_and_dropped():
    quiet, closed, talking = Idle(), Idle(), Idle()
    closed.server.close()  # what Redis's `timeout` or CLIENT KILL does
    talking.server.sendall(b"+PONG\r\n")  # data is not an EOF: left to redis-py's own check
    assert closed_idle(Pool(quiet, closed, talking)) == [closed]
    assert closed._sock is None and quiet._sock is not None and talking._sock is not None
    assert talking._sock.recv(7) == b"+PONG\r\n"  # peeked, not consumed


def test_nothing_idle_or_nothing_closed_is_nothing_found():
    assert closed_idle(Pool()) == []
    assert closed_idle(Pool(Idle(), Idle())) == []


def test_the_pinned_redis_py_keeps_idle_connections_where_the_check_reads_them():
    pool = redis.ConnectionPool()  # nothing connects here
    assert pool._available_connections == []
    assert pool.make_connection()._sock is None  # a socket only once connected
