import pytest

from api.breaker import CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_opens_after_threshold_and_retries_after_reset():
    clock = Clock()
    breaker = CircuitBreaker("redis", threshold=2, reset_s=2.0, clock=clock)
    breaker.failure()
    breaker.check()  # one failure: still closed
    breaker.failure()
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now = 2.5
    breaker.check()  # reset elapsed: a call may try again
    breaker.failure()  # the trial failed: open again at once
    with pytest.raises(CircuitOpen):
        breaker.check()


def test_success_closes_and_resets_the_count():
    breaker = CircuitBreaker("mysql", threshold=2, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()  # one failure since the success: still closed
    assert not breaker.is_open
    breaker.check()
    breaker.failure()  # the second in a row opens it
    assert breaker.is_open
    with pytest.raises(CircuitOpen):
        breaker.check()
