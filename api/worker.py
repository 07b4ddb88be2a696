"""gunicorn's gthread worker, plus queue stamps, shedding on arrival, and no thread for a silent connection.

gthread accepts a connection (or sees a kept-alive one readable) on its main thread and submits
it to a thread pool whose queue has no bound; how long a request waits there is invisible to
the app. This worker stamps the hand-off (or the kernel's receipt, below) and the thread's start
and gives both to the app in the WSGI environ (api.admission.QUEUED_AT / STARTED_AT), which
measures and sheds on them.

While admission control says the queue is too slow (api.admission.QueueGuard.shed_arrival: the
request a thread takes next has waited too long, or the requests ahead of a newcomer would take
too long by api.drain's measure, or, while overloaded, the newcomer waited too long in the
kernel), a plain GET arriving is answered 503 on the main thread: no thread, no HTTP parser, no
WSGI environ, so a rejection costs a fraction of an answer. A kept-alive connection's request is
shed where it stands, still on the poller, and each arrival is peeked once: every system call on
this thread lets a pool thread take the GIL (docs/decisions.md "Fewer system calls per rejection").

A just-accepted connection whose request has not come waits on the poller, not in a pool thread
(`_park`): with a few threads, a few silent connections would otherwise stop the worker. One whose
headers come too slowly once a thread reads them is cut (api/slow_clients.py).

Where Linux stamps received segments (api/kernel_stamps.py; UMS_API_KERNEL_STAMPS), a request is
stamped from when the kernel took its first byte, not from when the main thread got round to it:
under overload, requests wait in the accept queue and in kept-alive connections' buffers, a queue
the worker's own stamps cannot see.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import deque
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from api.admission import QUEUED_AT, STARTED_AT, Admission
from api.drain import DrainRate
from api.kernel_stamps import STAMP_SPACE, kernel_wait, stamp_listeners
from api.runtime import lower_this_thread
from api.slow_clients import HeaderDeadlines

FAST_PATH_NEEDS = (
    "pending_conns",
    "keepalived_conns",
    "poller",
    "max_keepalived",
    "nr_conns",
    "on_pending_socket_readable",
    "on_client_socket_readable",
)
# Larger than any request the fast path answers (the app refuses more than 16 KB of headers).
PEEK_BYTES = 32 * 1024
# How long gthread's thread waits for a new connection's first bytes (gunicorn 27 names it; 5 s).
DATA_WAIT_S = getattr(gthread, "DEFAULT_WORKER_DATA_TIMEOUT", 5.0)


class QueueStampingWorker(ThreadWorker):
    """gthread with a monotonic stamp at a request's arrival (the hand-off to the pool, or the kernel's
    receipt) and at a thread's start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamps = threading.local()
        self._admission: Admission | None = None
        # When each request still waiting for a thread arrived, in the pool's (FIFO) order: the first is
        # the next a thread takes, not always the oldest arrival (kernel stamps go back in time).
        self._waiting: deque[float] = deque()
        self._drain = DrainRate()
        self._parks = False  # gthread's connection bookkeeping is there (load_wsgi): park, not wait in a thread
        self._kernel_stamps = False  # the listening sockets stamp what they receive (load_wsgi)
        self.pool_nice = 0  # gunicorn.conf.py's post_fork sets it from UMS_API_POOL_NICE
        self.header_timeout_s = 0.0  # ... and this from UMS_API_HEADER_TIMEOUT_S (0: no deadline)
        self._headers: HeaderDeadlines | None = None  # made in load_wsgi, once the setting is there

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        """gthread's pool, its threads `pool_nice` steps below the main thread, which sheds on arrival."""
        if self.pool_nice <= 0:
            return super().get_thread_pool()
        return futures.ThreadPoolExecutor(self.cfg.threads, initializer=lower_this_thread, initargs=(self.pool_nice,))

    def enqueue_req(self, conn: Any) -> None:
        """Park a connection whose request has not come; shed on arrival when pressed; else stamp and submit."""
        data, waited = self._peek(conn) if self._parks else (b"", 0.0)
        if self._parks and not conn.initialized and not conn.data_ready and self.alive:
            if data is None:
                self._park(conn)
                return
            conn.data_ready = True  # what the thread's wait for data would find: it need not wait
        if self._shed_if_pressed(conn, data, waited, in_place=False):
            return
        self._submit(conn, waited)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection's next request: shed where it stands when pressed, else as gthread does."""
        data, waited = self._peek(conn) if self._admission is not None else (b"", 0.0)
        # Shed in place, the connection stays on the poller: gthread would take it off and put it back,
        # two epoll_ctl calls, each of which lets a pool thread take the GIL from this one.
        if self._shed_if_pressed(conn, data, waited, in_place=True):
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._submit(conn, waited)

    def _submit(self, conn: Any, waited: float) -> None:
        """Stamp the hand-off (`waited` back, the kernel's receipt) and give the connection to the pool."""
        arrived = time.monotonic() - waited
        conn.ums_queued_at = arrived
        self._waiting.append(arrived)
        super().enqueue_req(conn)

    def _shed_if_pressed(self, conn: Any, data: bytes | None, waited: float, in_place: bool) -> bool:
        """Answer 503 on arrival if admission control says the queue is too slow; whether it did."""
        admission = self._admission
        if admission is None or not data:
            return False
        predicted = self._drain.predicted_wait(len(self._waiting), self.cfg.threads)
        if not admission.pressing(self._head_wait(time.monotonic()), predicted, waited):
            return False
        return self._shed(conn, admission, data, in_place)

    def handle(self, conn: Any) -> Any:
        """Runs in a pool thread: remember this hand-off's stamps for the request it serves."""
        with contextlib.suppress(IndexError):
            self._waiting.popleft()  # the pool is FIFO: the oldest stamp is this request's
        self._stamps.queued_at = getattr(conn, "ums_queued_at", None)
        self._stamps.started_at = time.monotonic()
        # Counted from the app's start (below), not from here: a connection whose client has not
        # sent its request yet holds the thread without the worker being busy.
        self._stamps.counted = False
        self._stamps.conn = conn
        self._drain.entered()
        if self._headers is not None:
            self._headers.reading(conn)
        try:
            return super().handle(conn)
        finally:
            if self._headers is not None:
                self._headers.done(conn)
            self._drain.left(time.monotonic(), self._stamps.counted)

    def murder_pending(self) -> None:
        """gthread's turn of its loop for pending connections; also cut the reads of headers that came too slowly."""
        super().murder_pending()
        if self._headers is not None:
            self._headers.cut_late()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = getattr(self, "wsgi")  # noqa: B009 (gunicorn sets it untyped)
        admission = getattr(app, "wsgi_app", None)
        # Shedding on arrival uses gthread's connection bookkeeping (gunicorn 27); elsewhere it is
        # off and requests are shed when a thread takes them.
        # The callbacks are looked up on gthread's class: this one overrides on_client_socket_readable.
        fast = all(hasattr(ThreadWorker if name.startswith("on_") else self, name) for name in FAST_PATH_NEEDS)
        if not fast:
            missing = ", ".join(FAST_PATH_NEEDS)
            self.log.warning("gunicorn's gthread lacks %s: no shedding on arrival, no parking", missing)
        self._parks = fast
        self._admission = admission if isinstance(admission, Admission) and fast else None
        if self._admission is not None and not self.cfg.is_ssl:  # every plain GET meets the arrival stage
            self._admission.arrival_stage_runs()
            self._kernel_stamps = stamp_listeners(self.sockets, self._admission.kernel_stamps, self.log)
        if self.header_timeout_s > 0:
            self._headers = HeaderDeadlines(self.header_timeout_s)
        stamps, drain, headers = self._stamps, self._drain, self._headers

        def stamped(environ: dict[str, Any], start_response: Any) -> Any:
            if headers is not None:
                headers.done(getattr(stamps, "conn", None))  # its headers are read: no deadline while it is served
            if not getattr(stamps, "counted", True):
                drain.started(time.monotonic())
                stamps.counted = True
            queued = getattr(stamps, "queued_at", None)
            if queued is not None:
                environ[QUEUED_AT], environ[STARTED_AT] = queued, stamps.started_at
                # Once per hand-off: further HTTP/2 streams on the connection carry no stale stamp.
                stamps.queued_at = None
            return app(environ, start_response)

        self.wsgi = stamped

    def _peek(self, conn: Any) -> tuple[bytes | None, float]:
        """What waits on `conn`, peeked, not consumed (None: nothing yet; b"": its end, or an error a thread
        will meet), and how long it has been in the kernel's hands (0: no stamp, or stamps off): the stamp
        of the last segment the peek read, which for a GET the fast path sheds is its only one.

        One system call: on this thread every one lets a pool thread take the GIL, and under overload
        the 503s wait for it to come back (docs/decisions.md "Fewer system calls per rejection").
        """
        if self.cfg.is_ssl:  # an SSL socket takes no flags; before its handshake it is still plain
            return (None if conn.initialized or not self._readable(conn) else b""), 0.0
        try:
            data, ancillary, _, _ = conn.sock.recvmsg(PEEK_BYTES, STAMP_SPACE, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None, 0.0
        except OSError:  # the client is gone: the thread finds out as before
            return b"", 0.0
        return data, (kernel_wait(ancillary) if self._kernel_stamps and data else 0.0)

    def _head_wait(self, now: float) -> float:
        """How long the request a thread takes next has waited (0: none waits)."""
        try:
            return now - self._waiting[0]
        except IndexError:
            return 0.0

    def _shed(self, conn: Any, admission: Admission, data: bytes, in_place: bool) -> bool:
        """Answer 503 to the request `data` waiting on `conn` here (a kept-alive connection still on the poller
        if `in_place`); False: it goes to the pool as usual."""
        server = conn.server
        if not self.alive or self.cfg.is_ssl or conn.is_http2 or not isinstance(server, tuple):
            return False
        if str(server[1]) == admission.ops_port:
            return False  # the operational endpoints are never shed
        request = self._whole_get(conn, data)
        if request is None:
            return False
        first_line = request.split(b"\r\n", 1)[0]
        keep = first_line.endswith(b" HTTP/1.1") and b"connection: close" not in request.lower()
        keep = keep and self.cfg.keepalive > 0  # 0: gunicorn closes after every response, so this does too
        keep = keep and len(self.keepalived_conns) - int(in_place) < self.max_keepalived
        response = admission.shed_on_arrival(keep)
        try:
            conn.sock.recv(len(request))  # consumed only now that it is answered here
            sent = conn.sock.send(response)
        except OSError:  # the client left (reset): an exception here would end the worker's loop
            sent = 0
        if in_place:
            self.keepalived_conns.remove(conn)  # back at the end: the deque stays in timeout order
        if not keep or sent != len(response):
            if in_place:
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
            return True
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        if not in_place:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
        return True

    def _park(self, conn: Any) -> None:
        """Wait for a just-accepted connection's request on the poller, as gthread waits for a kept-alive one.

        gthread hands a new connection to a pool thread, which waits up to 5 s for its first bytes.
        A client may open a connection and send nothing for a while (Go's HTTP client dials one for
        a request, sends that request on a connection freed meanwhile, and keeps the new one idle):
        with a few threads, a few such connections stopped the worker serving its queue for up to
        5 s, and the requests queued behind them waited past their clients' timeouts
        (docs/decisions.md "Client timeouts in the full runs").

        It waits as long as gthread would: a thread's 5 s, then the keep-alive timeout on the poller
        (with keep-alive off, `keepalive` 0, the keep-alive timeout alone closed it at once).
        """
        conn.timeout = time.monotonic() + DATA_WAIT_S + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def _cap_keepalive(self, deadline: float) -> None:
        """At a stop, parked connections (no request yet) linger as long as kept-alive ones, not their whole wait."""
        super()._cap_keepalive(deadline)  # type: ignore[misc]  # gunicorn 27's; absent elsewhere, never called
        for conn in self.pending_conns:
            conn.timeout = min(conn.timeout, deadline)

    @staticmethod
    def _readable(conn: Any) -> bool:
        """Whether the connection's first bytes (or its end) have arrived; never blocks."""
        try:
            conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True  # a thread meets the error and closes the connection, as before
        return True

    @staticmethod
    def _whole_get(conn: Any, data: bytes) -> bytes | None:
        """`data` if it is one complete, bodiless GET and all the connection holds; else None."""
        unreader = getattr(conn.parser, "unreader", None)
        if unreader is not None and unreader.buf.getvalue():
            return None  # the parser holds bytes of it already
        if not data.startswith(b"GET ") or not data.endswith(b"\r\n\r\n") or data.count(b"\r\n\r\n") != 1:
            return None  # another method, incomplete, or pipelined: the parser's job
        lowered = data.lower()
        if b"\r\ncontent-length:" in lowered or b"\r\ntransfer-encoding:" in lowered:
            return None
        return data
