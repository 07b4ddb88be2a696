"""gunicorn access log as one JSON object per request: latency and the source that answered."""

from __future__ import annotations

import json
import traceback
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from api.admission import OUTCOME, PROXY_WAIT, QUEUE_WAIT


class JsonAccessLogger(Logger):
    """json.dumps escapes whatever a hostile request line holds; a format string would not."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        headers = {k.lower(): v for k, v in (resp.headers.items() if hasattr(resp.headers, "items") else resp.headers)}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        record = {
            "time": self.now(),
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("RAW_URI"),
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "source": headers.get("x-ums-source", "none"),
            "generation": headers.get("x-ums-generation"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            # Waits before a thread took the request: from its arrival (the kernel's stamp, else gunicorn's
            # hand-off), and from the proxy's stamp.
            "queue_ms": _ms(environ.get(QUEUE_WAIT)),
            "proxy_queue_ms": _ms(environ.get(PROXY_WAIT)),
            "admission": environ.get(OUTCOME),
        }
        try:
            self.access_log.info(json.dumps(record))
        except Exception:
            self.error(traceback.format_exc())


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
