"""Readiness of the API's two links, telling a misconfiguration from an outage.

A link that has answered once since the process started and fails now is an outage: the
other source answers and the API stays ready (the fallback). A link that has never answered
and fails with a misconfiguration (adapters/diagnose.py) keeps the API unready, with one
error log line naming the settings to check: a rollout with a wrong secret stops there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from adapters.diagnose import HINTS, mysql_cause, redis_cause
from adapters.mysql import MySQLError
from api.finder import MYSQL, PROJECTION, Finder

log = logging.getLogger(__name__)


class Link:
    """One link's history in this process: has it answered, and what misconfiguration was logged."""

    def __init__(self, name: str, kind: str, cause: Callable[[BaseException], str | None]) -> None:
        self.name = name
        self.kind = kind
        self.cause = cause
        self.answered = False
        self.logged = ""
        self._lock = threading.Lock()

    def check(self, probe: Callable[[], Any], errors: type[BaseException] | tuple[type[BaseException], ...]) -> str:
        """Empty when the probe answered; else the misconfiguration, or "down" for an outage."""
        try:
            probe()
        except errors as exc:
            cause = None if self.answered else self.cause(exc)
            if cause is None:
                return "down"
            with self._lock:
                if cause != self.logged:
                    self.logged = cause
                    log.error(
                        "%s: %s; %s. Not ready until that is fixed and the process restarted (%s)",
                        self.kind,
                        cause,
                        HINTS[self.kind],
                        type(exc).__name__,
                    )
            return cause
        self.answered = True
        return ""


class Links:
    def __init__(self, finder: Finder, redis_url: str) -> None:
        self.finder = finder
        self.projection = Link(PROJECTION, "redis", lambda exc: redis_cause(exc, redis_url))
        self.mysql = Link(MYSQL, "mysql", mysql_cause)

    def status(self) -> tuple[dict[str, bool], dict[str, str]]:
        """({source: answers}, {source: misconfiguration}) right now, each with its short timeout."""
        results = {
            PROJECTION: self.projection.check(self.finder.store.client.ping, redis.RedisError),
            MYSQL: self.mysql.check(self.finder.mysql.ping, MySQLError),
        }
        sources = {name: result == "" for name, result in results.items()}
        wrong = {name: result for name, result in results.items() if result not in ("", "down")}
        return sources, wrong
