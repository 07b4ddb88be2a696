"""While overloaded, only UMS_API_OVERLOAD_THREADS of a worker's threads serve at once; otherwise all do."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

from api.drain import DrainRate
from api.worker import QueueStampingWorker, overload_gate

THREADS, GATE = 4, 2
DEADLINE_S = 10.0


class Serving:
    """Stands in for gthread's handling of a connection: counts who is inside, holds them until released."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.released = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, _worker: Any, _conn: Any) -> None:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.released.wait(DEADLINE_S)
        with self._lock:
            self.inside -= 1


class CountingGate(threading.Semaphore):
    """The gate, counting the threads that came to it."""

    arrived = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        self.arrived += 1
        return super().acquire(blocking, timeout)

    __enter__ = acquire


class Overload:
    """Admission control as far as the gate asks it."""

    def __init__(self, overloaded: bool) -> None:
        self.on = overloaded
        self.predicted: list[float] = []

    def overloaded(self) -> bool:
        return self.on

    def pressing(self, _head_wait_s: float, predicted_wait_s: float) -> bool:
        self.predicted.append(predicted_wait_s)
        return False


def poll(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.fixture
def serving(monkeypatch) -> Serving:
    fake = Serving()
    monkeypatch.setattr(ThreadWorker, "handle", lambda self, conn: fake(self, conn))
    return fake


def worker(overloaded: bool) -> QueueStampingWorker:
    w = QueueStampingWorker.__new__(QueueStampingWorker)
    w.cfg = Config()
    w.cfg.set("threads", THREADS)
    w._admission, w._waiting, w._drain = Overload(overloaded), deque(), DrainRate()  # type: ignore[assignment]
    w._stamps = threading.local()
    w._gate, w._gate_threads = CountingGate(GATE), GATE
    return w


@pytest.fixture
def run(serving: Serving) -> Iterator[Callable[[QueueStampingWorker], list[threading.Thread]]]:
    started: list[threading.Thread] = []

    def start(w: QueueStampingWorker) -> list[threading.Thread]:
        for _ in range(THREADS):
            thread = threading.Thread(target=w.handle, args=(SimpleNamespace(),), daemon=True)
            thread.start()
            started.append(thread)
        return started

    yield start
    serving.released.set()
    for thread in started:
        thread.join(DEADLINE_S)


def test_while_overloaded_only_the_gate_s_threads_serve(serving, run):
    w = worker(overloaded=True)
    threads = run(w)
    # Every thread has reached the gate: two are serving, the other two wait on it.
    assert poll(lambda: w._gate.arrived == THREADS and serving.inside == GATE)
    assert serving.most == GATE
    serving.released.set()
    assert poll(lambda: not any(t.is_alive() for t in threads))
    assert serving.most == GATE  # the waiting two were served, after the first two
    assert w._drain.busy_threads == 0


def test_not_overloaded_every_thread_serves(serving, run):
    w = worker(overloaded=False)
    run(w)
    assert poll(lambda: serving.inside == THREADS)
    assert w._gate.arrived == 0


@pytest.mark.parametrize(("overloaded", "serving_threads"), [(True, GATE), (False, THREADS)])
def test_the_wait_predicted_for_an_arrival_counts_the_threads_that_serve(overloaded, serving_threads):
    w = worker(overloaded)
    w.tpool, w._parks = SimpleNamespace(submit=lambda *_: Future()), False
    w._drain.per_request_s, w._drain.busy_threads = 0.001, 2
    w._waiting.extend([0.0, 0.0])
    w.enqueue_req(SimpleNamespace())
    # Two in service, two waiting: with the gate's two threads the newcomer waits for three to finish,
    # with all four one finishing is enough.
    ahead = 2 + 2 + 1 - serving_threads
    assert w._admission.predicted == [pytest.approx(ahead * 0.001)]


@pytest.mark.parametrize(("limit", "gated"), [(0, False), (2, True), (3, True), (4, False), (8, False)])
def test_a_gate_exists_only_for_fewer_threads_than_the_worker_has(limit, gated):
    gate, threads = overload_gate(limit, THREADS)
    assert (gate is not None) == gated
    assert threads == (limit if gated else 0)
