"""How long a request arriving now would wait for a thread: the queue ahead times the busy time per request.

The busy time per request is measured where it is spent: the wall time between two requests
finishing while the worker had at least one in service, smoothed. On one core with several
threads that is the core's time per request, I/O waits included, not the inter-arrival time,
so a burst arriving after a quiet spell is not mistaken for a slow queue.
"""

from __future__ import annotations

import threading

# Weight of the newest sample: about the last 20 requests count.
ALPHA = 0.05


class DrainRate:
    """Busy wall time per finished request (an exponentially weighted mean); 0 until one has finished."""

    def __init__(self, alpha: float = ALPHA) -> None:
        self.alpha = alpha
        self.per_request_s = 0.0
        self._in_service = 0
        self._mark = 0.0  # the last completion, or the start of this busy period
        self._lock = threading.Lock()

    def started(self, now: float) -> None:
        with self._lock:
            if self._in_service == 0:
                self._mark = now
            self._in_service += 1

    def finished(self, now: float) -> None:
        with self._lock:
            if self._in_service == 0:
                return  # a finish without its start (not counted by this estimate)
            sample, self._mark = now - self._mark, now
            self._in_service -= 1
            if self.per_request_s == 0.0:
                self.per_request_s = sample
            else:
                self.per_request_s += self.alpha * (sample - self.per_request_s)

    def predicted_wait(self, waiting: int, busy_threads: int, threads: int) -> float:
        """The wait of a request arriving behind `waiting` requests no thread has taken yet, with
        `busy_threads` of the worker's `threads` at work: it starts once that many have finished
        that a thread is free for it."""
        ahead = busy_threads + waiting + 1 - threads
        return max(0, ahead) * self.per_request_s
