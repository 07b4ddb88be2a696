"""Logging set-up for the entry points: one JSON object per line, or plain text for humans."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO", json: bool = True) -> None:
    """Configure the root logger once, from an entry point (never at import)."""
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # librdkafka and urllib3 chatter is not ours to report at INFO.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def chosen() -> tuple[str, bool]:
    """The (level, json) the root logger has now: what a worker process passes to `configure`."""
    root = logging.getLogger()
    return logging.getLevelName(root.level), any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
