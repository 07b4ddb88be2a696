"""gunicorn's gthread worker, plus when each request was handed to the thread pool and when a thread took it.

gthread accepts a connection (or sees a kept-alive one readable) on its main thread and submits
it to a thread pool whose queue has no bound; how long a request waits there is invisible to
the app. This worker stamps the hand-off and the thread's start, and gives both to the app in
the WSGI environ (api.admission.QUEUED_AT / STARTED_AT), which measures and sheds on them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from api.admission import QUEUED_AT, STARTED_AT


class QueueStampingWorker(ThreadWorker):
    """gthread with a monotonic stamp at the hand-off to the pool and at a thread's start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamps = threading.local()

    def enqueue_req(self, conn: Any) -> None:
        """Stamp the connection, then submit it (accept, kept-alive readable, or read-ahead)."""
        conn.ums_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        """Runs in a pool thread: remember this hand-off's stamps for the request it serves."""
        self._stamps.queued_at = getattr(conn, "ums_queued_at", None)
        self._stamps.started_at = time.monotonic()
        return super().handle(conn)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = getattr(self, "wsgi")  # noqa: B009 (gunicorn sets it untyped)
        stamps = self._stamps

        def stamped(environ: dict[str, Any], start_response: Any) -> Any:
            queued = getattr(stamps, "queued_at", None)
            if queued is not None:
                environ[QUEUED_AT], environ[STARTED_AT] = queued, stamps.started_at
                # Once per hand-off: further HTTP/2 streams on the connection carry no stale stamp.
                stamps.queued_at = None
            return app(environ, start_response)

        self.wsgi = stamped
