"""The worker's main thread: a just-accepted connection whose request has not come waits on the poller, never
in a pool thread; a request is stamped from its arrival; a kept-alive connection's request is shed in place."""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from gunicorn.config import Config

from api.drain import DrainRate
from api.kernel_stamps import SO_TIMESTAMPNS, STAMP_SPACE, kernel_wait, stamp_listeners
from api.worker import PEEK_BYTES, QueueStampingWorker
from tests.helpers import wait_until


class Pool:
    """Stands in for the thread pool: remembers what was submitted, runs nothing."""

    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def submit(self, _fn: Any, conn: Any) -> Future[Any]:
        self.submitted.append(conn)
        return Future()


@pytest.fixture
def worker() -> Iterator[QueueStampingWorker]:
    """The worker's accept path without a master: no admission control, a pool that runs nothing."""
    w = QueueStampingWorker.__new__(QueueStampingWorker)
    w.cfg, w.alive, w.nr_conns, w.worker_connections, w.max_keepalived = Config(), True, 0, 1000, 996
    w._admission, w._waiting, w._drain, w._parks = None, deque(), DrainRate(), True
    w._kernel_stamps, w._headers = False, None
    w.tpool, w.poller, w.pending_conns, w.keepalived_conns = Pool(), selectors.DefaultSelector(), deque(), deque()
    yield w
    w.poller.close()
    for conn in [*w.tpool.submitted, *w.pending_conns, *w.keepalived_conns]:
        conn.sock.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)  # as gthread registers it
        yield sock


REQUEST = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_connection_without_its_request_is_parked_until_the_request_comes(worker, listener):
    with socket.create_connection(listener.getsockname()) as client:
        worker.accept(listener)
        assert worker.tpool.submitted == []  # gthread's own path: a thread waiting up to 5 s for bytes
        assert len(worker.pending_conns) == 1 and worker.nr_conns == 1
        client.sendall(REQUEST)
        events = worker.poller.select(timeout=5)
        for key, _ in events:
            key.data(key.fileobj)  # what gthread's loop does with a ready socket
        assert len(worker.tpool.submitted) == 1 and not worker.pending_conns
        assert worker.tpool.submitted[0].data_ready  # the thread starts on the request at once


def test_with_keep_alive_off_a_parked_connection_still_waits_for_its_request(worker, listener):
    worker.cfg.set("keepalive", 0)  # UMS_API_KEEPALIVE=0: gunicorn closes after each response
    with socket.create_connection(listener.getsockname()) as client:
        worker.accept(listener)
        worker.murder_pending()  # gthread's loop, right after the accept
        assert len(worker.pending_conns) == 1 and worker.nr_conns == 1, "closed before its request came"
        assert worker.pending_conns[0].timeout >= time.monotonic() + 4.0  # gthread's thread would wait 5 s
        client.sendall(REQUEST)
        dispatch(worker)
        assert len(worker.tpool.submitted) == 1


def test_at_a_stop_a_parked_connection_lingers_no_longer_than_a_kept_alive_one(worker, listener):
    with socket.create_connection(listener.getsockname()):
        worker.accept(listener)
        (conn,) = worker.pending_conns
        assert conn.timeout > time.monotonic() + 5  # waits for its request as gthread would
        deadline = time.monotonic() + 2
        worker._cap_keepalive(deadline)  # what gthread does when the worker stops
        assert conn.timeout == deadline


def test_with_keep_alive_off_a_request_shed_on_arrival_closes_its_connection(worker, listener):
    worker.cfg.set("keepalive", 0)
    worker._admission = admission = Pressed()
    with socket.create_connection(listener.getsockname(), timeout=5) as client:
        client.sendall(REQUEST)
        worker.accept(listener)
        assert client.recv(len(SHED)) == SHED
        assert admission.kept == [False] and not worker.keepalived_conns and worker.nr_conns == 0


def test_a_connection_whose_request_is_there_goes_to_a_thread(worker, listener):
    with socket.create_connection(listener.getsockname()) as client:
        client.sendall(REQUEST)
        worker.accept(listener)
        assert len(worker.tpool.submitted) == 1 and not worker.pending_conns
        assert worker.tpool.submitted[0].data_ready


def test_a_connection_closed_before_its_request_goes_to_a_thread_which_closes_it(worker, listener):
    client = socket.create_connection(listener.getsockname())
    client.close()
    worker.accept(listener)
    assert len(worker.tpool.submitted) == 1  # end of stream is readable: the thread sees it and closes


def stamp_listener(worker: QueueStampingWorker, listener: socket.socket) -> None:
    """Stamps on, and flowing: the kernel turns stamping on for the whole host a moment after the first
    socket asks (a deferred work item), so a segment sent at once may come unstamped."""
    worker.sockets = [listener]
    assert stamp_listeners(worker.sockets, True, logging.getLogger(__name__))
    worker._kernel_stamps = True

    def a_stamp_arrives() -> bool:
        with socket.create_connection(listener.getsockname()) as client:
            client.sendall(REQUEST)
            served, _ = listener.accept()
            with served:
                wait_until(lambda: served.recv(1, socket.MSG_PEEK), 5, "the request's first byte")
                _, ancillary, _, _ = served.recvmsg(PEEK_BYTES, STAMP_SPACE, socket.MSG_PEEK)
                return kernel_wait(ancillary) > 0

    wait_until(a_stamp_arrives, 5, "the kernel to stamp a received segment")


def test_a_request_is_stamped_from_when_the_kernel_received_it(worker, listener):
    stamp_listener(worker, listener)
    with socket.create_connection(listener.getsockname()) as client:
        client.sendall(REQUEST)
        time.sleep(0.05)  # not a synchronisation: the wait in the accept queue being measured
        before = time.monotonic()
        worker.accept(listener)
        (conn,) = worker.tpool.submitted
        # 10 ms of the 50 are slack: the stamp is converted from the wall clock to the monotonic one
        # by two reads a preemption can separate (a run on a loaded host missed by 0.07 ms). The
        # hand-off's own stamp would be after `before`.
        assert conn.ums_queued_at <= before - 0.04
        assert worker._waiting[0] == conn.ums_queued_at  # the queue's head wait counts from there too


def test_turned_off_the_listeners_stop_stamping(worker, listener):
    stamp_listener(worker, listener)
    assert not stamp_listeners(worker.sockets, False, logging.getLogger(__name__))
    assert listener.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 0


def test_without_kernel_stamps_a_request_is_stamped_at_the_hand_off(worker, listener):
    with socket.create_connection(listener.getsockname()) as client:
        client.sendall(REQUEST)
        time.sleep(0.05)
        before = time.monotonic()
        worker.accept(listener)
        (conn,) = worker.tpool.submitted
        assert conn.ums_queued_at >= before


def test_a_connection_with_nothing_to_read_has_no_kernel_wait(worker, listener):
    stamp_listener(worker, listener)
    with socket.create_connection(listener.getsockname()):
        worker.accept(listener)  # parked: nothing was sent
        (conn,) = worker.pending_conns
        assert worker._peek(conn) == (None, 0.0)


SHED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"


class Pressed:
    """Admission control's arrival-stage face (api.admission.Admission) with the queue too slow, or not."""

    ops_port = "1"

    def __init__(self) -> None:
        self.pressed, self.kept = True, []

    @property
    def shed(self) -> int:
        return len(self.kept)

    def pressing(self, *_waits: float) -> bool:
        return self.pressed

    def shed_on_arrival(self, keep_alive: bool) -> bytes:
        self.kept.append(keep_alive)
        return SHED


def dispatch(worker: QueueStampingWorker) -> None:
    """One turn of gthread's loop: the callbacks of whatever the poller finds ready."""
    for key, _ in worker.poller.select(timeout=5):
        key.data(key.fileobj)


def shed_once(worker: QueueStampingWorker, listener: socket.socket) -> tuple[socket.socket, Any]:
    """A client whose first request was shed on arrival, and the worker's connection, kept alive."""
    client = socket.create_connection(listener.getsockname(), timeout=5)
    client.sendall(REQUEST)
    worker.accept(listener)
    assert client.recv(len(SHED)) == SHED
    return client, worker.keepalived_conns[-1]


def test_a_kept_alive_connections_request_is_shed_in_place(worker, listener, monkeypatch):
    worker._admission = admission = Pressed()
    client, conn = shed_once(worker, listener)
    with client:
        client.sendall(REQUEST)
        calls: list[str] = []
        for name in ("register", "unregister", "modify"):  # each an epoll_ctl, which lets a thread take the GIL
            monkeypatch.setattr(worker.poller, name, lambda *args, name=name: calls.append(name))
        dispatch(worker)
        assert calls == []
        assert client.recv(len(SHED)) == SHED
        assert admission.shed == 2 and worker.tpool.submitted == []
        assert list(worker.keepalived_conns) == [conn] and worker.nr_conns == 1
        assert worker.poller.get_key(conn.sock).fileobj is conn.sock  # still on the poller
        assert worker._peek(conn) == (None, 0.0)  # the request was consumed


def test_a_connection_shed_in_place_moves_to_the_end_of_the_keep_alive_queue(worker, listener):
    worker._admission = Pressed()
    first, conn = shed_once(worker, listener)
    second, other = shed_once(worker, listener)
    with first, second:
        first.sendall(REQUEST)
        dispatch(worker)
        assert first.recv(len(SHED)) == SHED
        # gthread closes expired connections from the front and stops at the first that is not.
        assert list(worker.keepalived_conns) == [other, conn]
        assert conn.timeout >= other.timeout


def test_a_kept_alive_connections_request_goes_to_a_thread_when_not_pressed(worker, listener):
    worker._admission = admission = Pressed()
    client, conn = shed_once(worker, listener)
    with client:
        admission.pressed = False
        client.sendall(REQUEST)
        dispatch(worker)
        assert worker.tpool.submitted == [conn] and not worker.keepalived_conns
        with pytest.raises(KeyError):
            worker.poller.get_key(conn.sock)  # off the poller: the thread owns it
        assert worker._peek(conn)[0] == REQUEST  # left for the thread's parser


def test_a_kept_alive_connection_that_asks_to_close_is_shed_and_closed(worker, listener):
    worker._admission = admission = Pressed()
    client, conn = shed_once(worker, listener)
    with client:
        client.sendall(REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        dispatch(worker)
        assert admission.kept == [True, False]
        assert client.recv(len(SHED)) == SHED and client.recv(1) == b""  # answered, then closed
        assert not worker.keepalived_conns and worker.nr_conns == 0 and conn.sock.fileno() == -1
        assert all(key.fileobj is not conn.sock for key in worker.poller.get_map().values())  # off the poller


def test_a_connection_shed_in_place_counts_itself_once_against_the_keep_alive_bound(worker, listener):
    worker._admission = admission = Pressed()
    worker.max_keepalived = 1
    client, conn = shed_once(worker, listener)  # the one kept-alive connection the bound allows
    with client:
        client.sendall(REQUEST)
        dispatch(worker)
        assert client.recv(len(SHED)) == SHED
        assert admission.kept == [True, True] and list(worker.keepalived_conns) == [conn]
