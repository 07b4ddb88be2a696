"""The drain-rate estimate (api/drain.py) and the arrival bound it feeds (QueueGuard.shed_arrival)."""

from __future__ import annotations

import pytest

from api.admission import QueueGuard
from api.drain import DrainRate


def busy(threads: int, alpha: float = 1.0, per_request_s: float = 0.0) -> DrainRate:
    """A drain estimate with `threads` pool threads holding a hand-off."""
    drain = DrainRate(alpha=alpha)
    drain.per_request_s = per_request_s
    for _ in range(threads):
        drain.entered()
    return drain


def serve(drain: DrainRate, start: float, end: float) -> None:
    """One request from a thread's hand-off to its end, the app started at `start`."""
    drain.entered()
    drain.started(start)
    drain.left(end, served=True)


def test_nothing_finished_predicts_no_wait():
    assert busy(4).predicted_wait(50, threads=4) == 0.0


def test_a_request_waits_only_for_as_many_finishes_as_free_a_thread():
    drain = DrainRate(alpha=1.0)
    serve(drain, 0.0, 0.002)
    for _ in range(3):
        drain.entered()
    assert drain.predicted_wait(0, threads=4) == 0.0  # a thread is free
    assert drain.predicted_wait(1, threads=4) == pytest.approx(0.002)  # the waiting one takes it
    drain.entered()
    assert drain.predicted_wait(0, threads=4) == pytest.approx(0.002)
    assert drain.predicted_wait(5, threads=4) == pytest.approx(0.012)


def test_busy_time_per_request_while_requests_overlap():
    drain = DrainRate(alpha=1.0)  # the newest sample only: each step is exact
    drain.entered()
    drain.entered()
    drain.started(0.0)
    drain.started(0.0)
    drain.left(0.002, served=True)  # two in service from t=0: the first finished after 2 ms of busy time
    assert drain.per_request_s == pytest.approx(0.002)
    drain.left(0.003, served=True)  # the second 1 ms later: 1 ms of busy time per request
    assert drain.per_request_s == pytest.approx(0.001)
    drain.entered()
    assert drain.predicted_wait(9, threads=1) == pytest.approx(0.010)


def test_idle_time_between_requests_is_not_counted():
    drain = DrainRate(alpha=1.0)
    serve(drain, 0.0, 0.001)
    serve(drain, 5.0, 5.001)  # a quiet spell: the next busy period starts here, not at the last finish
    assert drain.per_request_s == pytest.approx(0.001)


def test_the_mean_moves_by_alpha():
    drain = DrainRate(alpha=0.5)
    for start, end in ((0.0, 0.002), (1.0, 1.004)):
        serve(drain, start, end)
    assert drain.per_request_s == pytest.approx(0.003)


def test_a_finish_without_a_start_is_ignored():
    drain = DrainRate()
    drain.entered()
    drain.left(1.0, served=True)
    assert drain.per_request_s == 0.0


def test_a_thread_held_by_a_silent_client_is_busy_but_not_work():
    drain = busy(1, per_request_s=0.001)
    assert drain.predicted_wait(0, threads=1) == pytest.approx(0.001)  # the held thread must finish first
    drain.left(5.0, served=False)  # the client never sent its request
    assert (drain.busy_threads, drain.per_request_s) == (0, 0.001)


def test_a_predicted_wait_sheds_over_the_target_while_overloaded_over_an_interval_otherwise():
    guard = QueueGuard(target_s=0.005, interval_s=0.1)  # not overloaded: no interval has ended
    assert not guard.shed_arrival(head_wait_s=0.0, predicted_wait_s=0.050)  # a burst: let through
    assert guard.shed_arrival(head_wait_s=0.0, predicted_wait_s=0.101)  # an overload starting
    guard.shed(0.050, now=0.0)
    guard.shed(0.002, now=0.1)  # overloaded: the first interval's shortest wait was 50 ms
    assert not guard.shed_arrival(head_wait_s=0.0, predicted_wait_s=0.005)
    assert guard.shed_arrival(head_wait_s=0.0, predicted_wait_s=0.006)
    guard.note_shed()  # the worker shed it
    # The shed counts for CoDel: the interval it happened in keeps the overload going.
    assert not guard.shed(0.001, now=0.2)  # a short wait, but that interval shed: still overloaded
    assert guard.shed_arrival(head_wait_s=0.050)


def stall_then_backlog(stall_s: float, waiting: int) -> float:
    """Three threads in service at 0.5 ms a request when Redis stalls for `stall_s`; the predicted
    wait of a request arriving behind the `waiting` the stall queued, once the three have finished."""
    drain = DrainRate()
    drain.per_request_s = 0.0005
    for _ in range(3):
        drain.entered()
        drain.started(0.0)
    for finished in (stall_s, stall_s + 0.0001, stall_s + 0.0002):  # all three were waiting on Redis
        drain.left(finished, served=True)
    return drain.predicted_wait(waiting, threads=3)


def test_a_stall_counts_as_a_slow_request_not_as_its_length():
    # 100 ms at 500 req/s queues 50 requests, which drain in ~25 ms: a burst CoDel lets through.
    predicted = stall_then_backlog(0.100, waiting=50)
    assert predicted < 0.050
    assert not QueueGuard(target_s=0.010, interval_s=0.1).shed_arrival(head_wait_s=0.0, predicted_wait_s=predicted)


def test_a_slowdown_that_lasts_lifts_the_estimate_within_a_few_dozen_requests():
    drain = DrainRate()
    drain.per_request_s = 0.0005
    start = 0.0
    for _ in range(40):  # every request now takes 10 ms (a MySQL fallback, a slow Redis)
        serve(drain, start, start + 0.010)
        start += 0.010
    assert drain.per_request_s > 0.005
