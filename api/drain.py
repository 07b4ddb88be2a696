"""How long a request arriving now would wait for a thread: the requests ahead times the busy time per request.

The busy time per request is measured where it is spent: the wall time between two requests
finishing while the worker had at least one in service, smoothed. On one core with several
threads that is the core's time per request, I/O waits included, not the inter-arrival time,
so a burst arriving after a quiet spell is not mistaken for a slow queue.
"""

from __future__ import annotations

import threading

# Weight of the newest sample: about the last 20 requests count.
ALPHA = 0.05
# A sample counts as at most this many times the estimate. A stall (Redis busy with a long
# command, the core taken away) ends with one finish whose sample is the whole stall: counted
# whole, a 75 ms stall at 500 req/s made the 40 requests it queued look like 4 ms each, and the
# onset rule shed the newest on arrival (bench/stalls.py, docs/decisions.md "Stalls are not
# overload"). A slowdown that lasts still lifts the estimate by up to 15 % a request.
SAMPLE_CAP = 4.0


class DrainRate:
    """The worker's busy threads and its busy wall time per finished request (an exponentially
    weighted mean, 0 until one has finished), under one lock."""

    def __init__(self, alpha: float = ALPHA) -> None:
        self.alpha = alpha
        self.per_request_s = 0.0
        self.busy_threads = 0  # pool threads inside a hand-off, whatever holds them
        self._in_service = 0  # requests the app has started and not finished
        self._mark = 0.0  # the last completion, or the start of this busy period
        self._lock = threading.Lock()

    def entered(self) -> None:
        """A pool thread took a hand-off (its client may not have sent the request yet)."""
        with self._lock:
            self.busy_threads += 1

    def started(self, now: float) -> None:
        """The app started on a request: from here the worker is busy with it."""
        with self._lock:
            if self._in_service == 0:
                self._mark = now
            self._in_service += 1

    def left(self, now: float, served: bool) -> None:
        """A pool thread is done with its hand-off; `served`: the app had started on it."""
        with self._lock:
            self.busy_threads -= 1
            if not served or self._in_service == 0:
                return  # nothing the estimate counted
            sample, self._mark = now - self._mark, now
            self._in_service -= 1
            if self.per_request_s == 0.0:
                self.per_request_s = sample
            else:
                sample = min(sample, SAMPLE_CAP * self.per_request_s)
                self.per_request_s += self.alpha * (sample - self.per_request_s)

    def predicted_wait(self, waiting: int, threads: int) -> float:
        """The wait of a request arriving behind `waiting` requests no thread has taken yet: it
        starts once enough of the busy threads' and the waiting requests have finished that one of
        the worker's `threads` is free for it."""
        ahead = self.busy_threads + waiting + 1 - threads
        return max(0, ahead) * self.per_request_s
