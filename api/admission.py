"""Admission control before Flask: the queue wait of each request, CoDel-style shedding, deadlines.

A request's wait is the time from its earliest trusted stamp to the moment a thread took it:
the gunicorn worker's stamp (api/worker.py puts QUEUED_AT and STARTED_AT in the environ) and,
when present and trusted, a proxy's `X-Request-Start`. docs/decisions.md "Admission control"
says why the policy is CoDel-style rather than a fixed count.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from adapters.settings import Settings
from api.reply import TYPE_BASE

# Environ keys set by api.worker.QueueStampingWorker (time.monotonic() seconds).
QUEUED_AT = "ums.queued_at"
STARTED_AT = "ums.started_at"
# Set here, read by the access log (api/accesslog.py).
QUEUE_WAIT = "ums.queue_wait_s"
PROXY_WAIT = "ums.proxy_wait_s"
OUTCOME = "ums.admission"

ADMITTED, SHED, EXPIRED = "admitted", "shed", "expired"
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Stamps further off than this are a broken clock or header, not a queue: ignored.
PLAUSIBLE_AGE_S = 3600.0

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def parse_request_start(value: str, now: float) -> float | None:
    """Epoch seconds from `X-Request-Start` (`t=<usec>`, `t=<msec>`, `<sec.frac>`); None if unreadable."""
    text = value.strip().removeprefix("t=").strip()
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    if "." not in text:
        # An integer's unit follows from its size: seconds, milliseconds or microseconds since 1970.
        if number >= 1e14:
            number /= 1e6
        elif number >= 1e11:
            number /= 1e3
    return number if abs(now - number) <= PLAUSIBLE_AGE_S else None


@dataclass
class QueueGuard:
    """CoDel's test on a server queue: overloaded when no request of the last interval waited under the target.

    While overloaded, a request that waited more than twice the target is shed, already on arrival
    (a wait in the kernel's buffers: over `arrival_wait_s`) or when a thread takes it; otherwise
    only the deadline bounds the wait (Facebook's variant of CoDel for server queues). Shedding
    keeps the queue short by itself, so the overload ends only after an interval that needed no
    shedding and had a short wait. With `at_dequeue` off (the worker sheds on arrival), a thread
    judges only the wait the arrival stage could not see.
    """

    target_s: float
    interval_s: float
    at_dequeue: bool = True
    onset_s: float = 0.0  # the wait that sheds before an interval has said "overloaded" (0: the interval)
    # A kernel wait that sheds an arrival while overloaded; 0 (here): twice the target. Admission passes
    # UMS_API_ARRIVAL_WAIT_MS, 5 ms by default.
    arrival_wait_s: float = 0.0
    _overloaded: bool = False
    _interval_end: float | None = None
    _min_wait: float = math.inf
    _shed_in_interval: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.onset_s = self.onset_s or self.interval_s  # resolved once, not on every arrival
        self.arrival_wait_s = self.arrival_wait_s or 2 * self.target_s

    def shed(self, wait_s: float, now: float, unseen_s: float = 0.0) -> bool:
        """Record the wait of a request a thread took; whether to shed it (`unseen_s`: its wait before
        the worker accepted it, e.g. behind a proxy, which the arrival stage cannot judge)."""
        with self._lock:
            if self._interval_end is None or now >= self._interval_end:
                if self._interval_end is not None:
                    standing = self._min_wait > self.target_s
                    self._overloaded = standing or (self._overloaded and self._shed_in_interval)
                self._interval_end = now + self.interval_s
                self._min_wait = wait_s
                self._shed_in_interval = False
            elif wait_s < self._min_wait:
                self._min_wait = wait_s
            shed = self._overloaded and (wait_s if self.at_dequeue else unseen_s) > 2 * self.target_s
            self._shed_in_interval |= shed
        return shed

    def shed_arrival(self, head_wait_s: float, predicted_wait_s: float = 0.0, waited_s: float = 0.0) -> bool:
        """Whether to shed a request arriving behind a queue: its oldest has waited `head_wait_s`, the
        newcomer would wait `predicted_wait_s` (api.drain) and has waited `waited_s` already (in the
        kernel's buffers before the worker saw it: api.worker's kernel stamps).

        In a FIFO queue the newcomer waits about as long as the head has, or as long as the
        requests ahead of it take. While overloaded, a head over twice the target (as a thread
        would shed) or a prediction over the target sheds it before it costs a thread anything:
        a request decided only when a thread takes it has waited already, and its 503 arrives as
        late as a slow answer would; the margin between the target here and twice the target
        there keeps those few. Not overloaded, a burst is let through as CoDel means to (a 30 ms
        collector pause at 80 % load queues 30 requests), unless it predicts a wait longer than
        the onset (a whole interval unless UMS_API_QUEUE_ONSET_MS is set): the start of an overload, before
        an interval has ended to say so. While overloaded, a newcomer that waited over `arrival_wait_s`
        before the worker could look at it is shed, for a fraction of what a thread's shed costs:
        served, it would only hold the worker while fresher requests wait behind it.
        """
        waited_long = (
            head_wait_s > 2 * self.target_s or predicted_wait_s > self.target_s or waited_s > self.arrival_wait_s
        )
        return (self._overloaded and waited_long) or predicted_wait_s > self.onset_s

    def note_shed(self) -> None:
        """A request was shed on arrival: the interval it fell in shed (so the overload goes on)."""
        self._shed_in_interval = True


@dataclass(frozen=True)
class AdmissionMetrics:
    wait: Histogram
    outcomes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AdmissionMetrics:
        """The queue-wait histogram and the admitted/shed/expired counter, in `registry`."""
        return cls(
            wait=Histogram(
                "ums_api_queue_wait_seconds",
                "Time a request waited before a thread took it, by the stamp it was measured from",
                ["stamp"],
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            outcomes=Counter(
                "ums_api_admission",
                "Requests on the public port by admission outcome (admitted, shed, expired) and the stage that"
                " decided it (arrival: gunicorn's main thread, before any parsing; dequeue: when a thread took it)",
                ["outcome", "stage"],
                registry=registry,
            ),
        )


def rejection(slug: str, detail: str, retry_after_s: int) -> tuple[str, list[tuple[str, str]], bytes]:
    """A 503 problem+json, built once: status line, headers, body."""
    body = json.dumps(
        {"type": TYPE_BASE + slug, "title": "Service Unavailable", "status": 503, "detail": detail}
    ).encode()
    headers = [
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        ("Retry-After", str(retry_after_s)),
        ("Cache-Control", "no-store"),
    ]
    return "503 Service Unavailable", headers, body


class Admission:
    """WSGI middleware: measures the queue wait, sheds or expires requests before the app runs."""

    def __init__(
        self,
        app: WsgiApp,
        settings: Settings,
        metrics: AdmissionMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        limits = ("api_queue_target_ms", "api_queue_interval_ms", "api_queue_onset_ms", "api_arrival_wait_ms")
        for name in (*limits, "api_request_deadline_ms"):
            if getattr(settings, name) < 0:
                raise ValueError(f"UMS_{name.upper()} must be >= 0")
        if settings.api_queue_target_ms > 0 and settings.api_queue_interval_ms <= 0:
            raise ValueError("UMS_API_QUEUE_INTERVAL_MS must be > 0 while UMS_API_QUEUE_TARGET_MS is set")
        self.app = app
        self.ops_port = settings.ops_bind.rpartition(":")[2]
        self.deadline_s = settings.api_request_deadline_ms / 1000
        self.trust_proxy = settings.api_trust_request_start
        self.guard = (
            QueueGuard(
                settings.api_queue_target_ms / 1000,
                settings.api_queue_interval_ms / 1000,
                onset_s=settings.api_queue_onset_ms / 1000,
                arrival_wait_s=settings.api_arrival_wait_ms / 1000,
            )
            if settings.api_queue_target_ms > 0
            else None
        )
        self.shed_at_dequeue = settings.api_shed_at_dequeue
        self.kernel_stamps = settings.api_kernel_stamps  # read by api.worker
        self.metrics = metrics
        self.clock, self.wall = clock, wall
        retry = settings.api_shed_retry_after_s
        self.shed_response = rejection("overloaded", "the API is over its capacity; retry later", retry)
        self.expired_response = rejection("deadline-exceeded", "the request waited past its deadline", retry)
        self._outcome = {name: metrics.outcomes.labels(name, "dequeue") for name in (ADMITTED, SHED, EXPIRED)}
        self._shed_on_arrival = metrics.outcomes.labels(SHED, "arrival")
        status, headers, body = self.shed_response
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self._raw_shed = {
            keep: f"HTTP/1.1 {status}\r\n{head}Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + body
            for keep in (True, False)
        }
        self._wait = {name: metrics.wait.labels(name) for name in ("accept", "proxy")}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        wait = self.measure(environ)
        if environ.get("SERVER_PORT") == self.ops_port:
            return self.app(environ, start_response)  # operational endpoints are never shed
        # The part of the wait before gunicorn accepted the request, which the arrival stage cannot see.
        unseen = max(0.0, environ.get(PROXY_WAIT, 0.0) - environ.get(QUEUE_WAIT, 0.0))
        outcome = self.decide(wait, unseen)
        environ[OUTCOME] = outcome
        self._outcome[outcome].inc()
        if outcome == ADMITTED:
            return self.app(environ, start_response)
        status, headers, body = self.shed_response if outcome == SHED else self.expired_response
        start_response(status, headers)
        return [body]

    def measure(self, environ: dict[str, Any]) -> float | None:
        """This request's wait before a thread took it (the longest trusted measure), observed; None if unknown."""
        now = self.clock()
        started = environ.get(STARTED_AT, now)
        queued = environ.get(QUEUED_AT)
        waits = []
        if queued is not None:
            environ[QUEUE_WAIT] = accept_wait = max(0.0, started - queued)
            self._wait["accept"].observe(accept_wait)
            waits.append(accept_wait)
        header = environ.get("HTTP_X_REQUEST_START")
        if header and self.trust_proxy:
            wall_started = self.wall() - (now - started)
            stamp = parse_request_start(header, wall_started)
            if stamp is not None:
                environ[PROXY_WAIT] = proxy_wait = max(0.0, wall_started - stamp)
                self._wait["proxy"].observe(proxy_wait)
                waits.append(proxy_wait)
        return max(waits) if waits else None

    def arrival_stage_runs(self) -> None:
        """The worker sheds plain GETs on arrival (api.worker): a thread sheds as UMS_API_SHED_AT_DEQUEUE says."""
        if self.guard is not None:
            self.guard.at_dequeue = self.shed_at_dequeue

    def pressing(self, head_wait_s: float, predicted_wait_s: float = 0.0, waited_s: float = 0.0) -> bool:
        """Whether to shed an arriving request (QueueGuard.shed_arrival)."""
        return self.guard is not None and self.guard.shed_arrival(head_wait_s, predicted_wait_s, waited_s)

    def shed_on_arrival(self, keep_alive: bool) -> bytes:
        """The raw HTTP/1.1 503 for a request shed on arrival, counted (only once the worker sheds it:
        a request the arrival stage cannot answer, such as a POST or the ops port, goes on as usual)."""
        self._shed_on_arrival.inc()
        if self.guard is not None:
            self.guard.note_shed()
        return self._raw_shed[keep_alive]

    def decide(self, wait_s: float | None, unseen_s: float = 0.0) -> str:
        """admitted, shed or expired for a request that waited `wait_s` (None: unknown, admitted), of which
        `unseen_s` before the worker accepted it."""
        if wait_s is None:
            return ADMITTED
        shed = self.guard is not None and self.guard.shed(wait_s, self.clock(), unseen_s)
        if self.deadline_s > 0 and wait_s > self.deadline_s:
            return EXPIRED
        return SHED if shed else ADMITTED
