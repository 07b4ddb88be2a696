"""Prometheus metrics of the API, correct under several gunicorn workers (multiprocess mode)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class ApiMetrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    read_cache: Counter
    _counters: dict[tuple[str, str, int, str], Any] = field(default_factory=dict)
    _histograms: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls) -> ApiMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "ums_api_requests",
                "HTTP requests answered",
                ["route", "method", "status", "source"],
                registry=registry,
            ),
            duration=Histogram(
                "ums_api_request_duration_seconds",
                "Time to answer a request",
                ["route"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                registry=registry,
            ),
            read_cache=Counter(
                "ums_api_read_cache",
                "Projection reads by the read cache's outcome (hit, miss, bypass) and its resets",
                ["outcome"],
                registry=registry,
            ),
        )

    def record(self, route: str, method: str, status: int, source: str, seconds: float | None) -> None:
        """Count one request; label children are cached (labels() costs a lock and a tuple each time)."""
        key = (route, method, status, source)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(route, method, str(status), source)
        counter.inc()
        if seconds is not None:
            histogram = self._histograms.get(route)
            if histogram is None:
                histogram = self._histograms[route] = self.duration.labels(route)
            histogram.observe(seconds)

    def read_cache_outcome(self) -> Callable[[str], None]:
        """What the read cache calls per outcome (adapters/tracking.py); children made once."""
        children = {o: self.read_cache.labels(o) for o in ("hit", "miss", "bypass", "reset")}
        return lambda outcome: children[outcome].inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format: every worker's samples when gunicorn set up multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
