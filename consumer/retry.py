"""Retry with exponential backoff and full jitter, interruptible by a stop event."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Stopping(Exception):
    """Shutdown was requested while an operation was still being retried."""


def retry_until_done(
    operation: Callable[[], T],
    retry_on: tuple[type[BaseException], ...],
    stop: threading.Event,
    what: str,
    base_s: float = 0.05,
    cap_s: float = 5.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `operation` until it succeeds; raise Stopping if `stop` is set first."""
    attempt = 0
    while True:
        try:
            return operation()
        except retry_on as exc:
            attempt += 1
            delay = random.uniform(0, min(cap_s, base_s * 2**attempt))
            log.warning(
                "%s failed, retrying",
                what,
                extra={"attempt": attempt, "delay_s": round(delay, 3), "error": repr(exc)},
            )
            if on_retry:
                on_retry(exc)
            if stop.wait(delay):
                raise Stopping(what) from exc
