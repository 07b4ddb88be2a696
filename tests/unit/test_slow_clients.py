"""Connections whose request headers come too slowly are cut (api/slow_clients.py)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from api.slow_clients import SAY_EVERY_S, HeaderDeadlines


class Conn:
    """What the deadlines use of gthread's connection (TConn): its socket; hashed by identity, as TConn is."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def clock() -> tuple[list[float], Callable[[], float]]:
    """A clock the test moves: (its time, to change; the clock)."""
    now = [100.0]
    return now, lambda: now[0]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, client = socket.socketpair()
    with ours, client:
        yield ours, client


def test_a_read_blocked_past_the_deadline_returns_as_if_the_client_had_closed(pair, caplog):
    ours, client = pair
    (now, time), log = clock(), logging.getLogger("test.slow")
    deadlines = HeaderDeadlines(2.0, log, time)
    conn = Conn(ours)
    client.sendall(b"G")  # a byte, then nothing
    got: list[bytes] = []
    deadlines.reading(conn)
    reader = threading.Thread(target=lambda: got.extend([ours.recv(10), ours.recv(10)]))
    reader.start()
    assert deadlines.cut_late() == 0
    now[0] += 1.9
    assert deadlines.cut_late() == 0  # not yet
    now[0] += 0.2
    with caplog.at_level(logging.WARNING, logger="test.slow"):
        assert deadlines.cut_late() == 1
    reader.join(5)
    assert not reader.is_alive(), "the blocked read never returned"
    assert got == [b"G", b""]
    assert "1 connection(s) cut" in caplog.text
    assert deadlines.cut_late() == 0  # cut once


def test_a_request_read_in_time_is_never_cut(pair):
    ours, _ = pair
    now, time = clock()
    deadlines = HeaderDeadlines(2.0, logging.getLogger("test.slow"), time)
    conn = Conn(ours)
    deadlines.reading(conn)
    deadlines.done(conn)  # the app started on it: served as long as it takes
    now[0] += 60
    assert deadlines.cut_late() == 0
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):
        ours.recv(1)  # still open for reading


def test_cuts_are_said_at_most_once_a_minute(caplog):
    now, time = clock()
    deadlines = HeaderDeadlines(1.0, logging.getLogger("test.slow"), time)
    with caplog.at_level(logging.WARNING, logger="test.slow"):
        for _ in range(3):
            conn = Conn(socket.socket())
            deadlines.reading(conn)
            now[0] += 2
            assert deadlines.cut_late() == 1
            conn.sock.close()
        now[0] += SAY_EVERY_S
        deadlines.cut_late()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("1 connection(s) cut") and lines[1].startswith("2 connection(s) cut"), lines
    assert len(lines) == 2
