"""Interpreter settings each API worker applies after gunicorn forks it."""

from __future__ import annotations

import logging
import sys

from adapters.settings import Settings

log = logging.getLogger(__name__)


def apply_switch_interval(settings: Settings) -> float:
    """Set the GIL switch interval from UMS_API_SWITCH_INTERVAL_MS (0: leave Python's); the interval in force."""
    milliseconds = settings.api_switch_interval_ms
    if milliseconds > 0:
        sys.setswitchinterval(milliseconds / 1000)
        log.debug("GIL switch interval set to %s ms", milliseconds)
    return sys.getswitchinterval()
