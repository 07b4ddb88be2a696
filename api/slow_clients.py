"""Requests whose headers come too slowly: their connections are cut, so a few slow clients cannot hold every thread.

A gthread pool thread reads a request's headers with a blocking read and no deadline: a client
that sends one byte, then nothing, holds the thread until it goes. With four threads, four such
connections stopped a worker, `/livez` included (docs/decisions.md "Slow clients"). The worker's
main thread, which wakes at least once a second, cuts the read side of each connection whose
headers are still coming past UMS_API_HEADER_TIMEOUT_S: the blocked read returns as if the client
had closed, and the thread closes the connection and moves on.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

# How often at most the cuts are logged: a slow-client flood would otherwise flood the log.
SAY_EVERY_S = 60.0


class HeaderDeadlines:
    """Which connections a pool thread is reading headers from, and until when."""

    def __init__(
        self, timeout_s: float, log: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`log`: this module's by default, which follows UMS_LOG_JSON (gunicorn's own error log would not)."""
        self.timeout_s, self.log, self.clock = timeout_s, log or logging.getLogger(__name__), clock
        self._reading: dict[Any, float] = {}  # written by pool threads, read by the main thread: single dict ops
        self._cut = 0  # cut since the last line logged
        self._said = -SAY_EVERY_S

    def reading(self, conn: Any) -> None:
        """A pool thread starts reading `conn`'s next request."""
        self._reading[conn] = self.clock() + self.timeout_s

    def done(self, conn: Any) -> None:
        """`conn`'s request was read (the app starts on it), or its thread let go of it."""
        self._reading.pop(conn, None)

    def cut_late(self) -> int:
        """On the main thread: cut every connection past its deadline; how many."""
        now = self.clock()
        late = [conn for conn, deadline in list(self._reading.items()) if deadline <= now]
        for conn in late:
            if self._reading.pop(conn, None) is None:
                continue  # its headers were read meanwhile: it is being served
            with contextlib.suppress(OSError):  # already gone
                # socket.socket's, not SSLSocket's (which would drop the TLS object under the reading thread).
                socket.socket.shutdown(conn.sock, socket.SHUT_RD)
        self._cut += len(late)
        if self._cut and now - self._said >= SAY_EVERY_S:
            self.log.warning(
                "%d connection(s) cut: request headers not complete within %.1f s (UMS_API_HEADER_TIMEOUT_S)",
                self._cut,
                self.timeout_s,
            )
            self._cut, self._said = 0, now
        return len(late)
