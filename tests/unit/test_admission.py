"""Admission control (api/admission.py): the CoDel-style test, the deadline, and the middleware before Flask."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from api.admission import QUEUED_AT, STARTED_AT, Admission, QueueGuard, parse_request_start
from api.finder import Finder
from domain import Name, PhoneNumber, User, UserAdded, Version

OPS = "http://localhost:9080"  # the unit settings' ops port: api_bind's port + 1000
NOW = 1_764_700_000.0  # epoch seconds
USER = User(Name("KrishnaMohan"), PhoneNumber(9731423166), datetime(2022, 9, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1764699999500000", NOW - 0.5),  # microseconds (nginx `t=${msec}` without the dot, HAProxy)
        ("t=1764699999500", NOW - 0.5),  # milliseconds
        ("1764699999.5", NOW - 0.5),  # seconds with a fraction
        ("t=1764699999.5", NOW - 0.5),
        (" t=1764699999 ", NOW - 1.0),  # whole seconds
    ],
)
def test_request_start_formats(header, expected):
    assert parse_request_start(header, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("header", ["", "t=", "soon", "t=-5", "nan", "inf", "t=0", "t=1000000000000000"])
def test_unreadable_or_implausible_request_start_is_ignored(header):
    assert parse_request_start(header, NOW) is None


def test_codel_sheds_only_after_an_interval_without_a_short_wait():
    guard = QueueGuard(target_s=0.005, interval_s=0.1)
    # The first interval: long waits, but no interval has ended yet, so nothing is shed.
    assert not guard.shed(0.050, now=0.0)
    assert not guard.shed(0.040, now=0.05)
    # Its shortest wait (40 ms) was over the target: overloaded.
    assert guard.shed(0.030, now=0.1)
    # Overloaded, a request that waited at most twice the target is still served.
    assert not guard.shed(0.009, now=0.12)
    assert not guard.shed(0.001, now=0.15)
    # That interval had a short wait, but it shed a request: shedding kept the queue short, still overloaded.
    assert guard.shed(0.030, now=0.2)
    assert not guard.shed(0.001, now=0.25)
    # The same again, then an interval with a short wait and nothing shed: the overload is over.
    assert not guard.shed(0.001, now=0.31)
    assert not guard.shed(0.030, now=0.42)


def test_arrivals_are_shed_while_overloaded_behind_a_queue_that_waited_long():
    guard = QueueGuard(target_s=0.005, interval_s=0.1)
    guard.shed(0.050, now=0.0)
    assert not guard.shed_arrival(0.050)  # no interval has ended yet
    guard.shed(0.002, now=0.1)
    assert guard.shed_arrival(0.050)
    guard.note_shed()  # the worker shed it
    assert not guard.shed_arrival(0.008)  # the queue in front of it is short
    # The arrival shed counts: the next interval stays overloaded despite its short waits.
    assert not guard.shed(0.001, now=0.2)
    assert guard.shed_arrival(0.050)


def test_a_shed_the_worker_did_not_make_does_not_prolong_the_overload():
    guard = QueueGuard(target_s=0.005, interval_s=0.1)
    guard.shed(0.050, now=0.0)
    guard.shed(0.002, now=0.1)  # overloaded
    assert guard.shed_arrival(0.050)  # pressing, but the worker could not answer it (a POST, say)
    guard.shed(0.001, now=0.2)  # an interval with a short wait and no shed: the overload is over
    assert not guard.shed_arrival(0.050)


def test_while_overloaded_a_newcomer_that_waited_long_before_the_worker_saw_it_is_shed():
    guard = QueueGuard(target_s=0.005, interval_s=0.1)
    assert not guard.shed_arrival(0.0, waited_s=0.050)  # not overloaded: a burst is let through
    guard.shed(0.050, now=0.0)
    guard.shed(0.050, now=0.1)  # an interval without a short wait: overloaded
    assert guard.shed_arrival(0.0, waited_s=0.011)  # an empty queue, but it waited in the kernel
    assert not guard.shed_arrival(0.0, waited_s=0.009)


def test_the_arrival_wait_setting_sets_how_long_a_newcomer_may_have_waited_while_overloaded():
    guard = QueueGuard(target_s=0.005, interval_s=0.1, arrival_wait_s=0.002)
    assert not guard.shed_arrival(0.0, waited_s=0.003)  # not overloaded: the setting does not apply
    guard.shed(0.050, now=0.0)
    guard.shed(0.050, now=0.1)
    assert guard.shed_arrival(0.0, waited_s=0.003)
    assert not guard.shed_arrival(0.0, waited_s=0.001)
    assert not guard.shed_arrival(0.009, waited_s=0.001)  # the head's wait keeps twice the target


def test_the_arrival_wait_setting_reaches_the_guard(settings, store, mysql):
    assert create_app(settings, finder=Finder(store, mysql, settings)).wsgi_app.guard.arrival_wait_s == 0.005
    twice = replace(settings, api_queue_target_ms=10.0, api_arrival_wait_ms=0.0)
    app = create_app(twice, finder=Finder(store, mysql, twice))
    assert app.wsgi_app.guard.arrival_wait_s == pytest.approx(0.020)  # 0: twice the target


def test_without_dequeue_shedding_a_thread_serves_what_it_takes_and_arrivals_are_still_shed():
    guard = QueueGuard(target_s=0.005, interval_s=0.1, at_dequeue=False)
    assert not guard.shed(0.050, now=0.0)
    # Overloaded from here on (the first interval's shortest wait was 50 ms), yet a thread sheds nothing.
    assert not guard.shed(0.030, now=0.1)
    assert guard.shed_arrival(0.050)
    guard.note_shed()
    assert not guard.shed(0.001, now=0.2)
    assert guard.shed_arrival(0.050)
    guard.note_shed()
    # That interval's waits were short, but the arrival stage shed in it: the overload stays on.
    assert not guard.shed(0.001, now=0.31)
    assert guard.shed_arrival(0.050)
    guard.note_shed()
    assert not guard.shed(0.001, now=0.42)
    # A wait the arrival stage could not see (before the worker accepted the request) is still judged.
    assert guard.shed(0.030, now=0.45, unseen_s=0.025)
    assert not guard.shed(0.030, now=0.46, unseen_s=0.005)
    # An interval of short waits without a shed ends it.
    assert not guard.shed(0.001, now=0.56)
    assert not guard.shed(0.001, now=0.67)
    assert not guard.shed_arrival(0.050)


def test_before_an_interval_says_overloaded_only_a_wait_past_the_onset_is_shed():
    # The start of an overload: no interval has ended, so only the predicted wait can shed.
    default = QueueGuard(target_s=0.010, interval_s=0.1)
    assert not default.shed_arrival(0.0, predicted_wait_s=0.060)
    assert default.shed_arrival(0.0, predicted_wait_s=0.101)  # 0: the interval
    early = QueueGuard(target_s=0.010, interval_s=0.1, onset_s=0.020)
    assert not early.shed_arrival(0.0, predicted_wait_s=0.019)  # a short burst still queues
    assert early.shed_arrival(0.0, predicted_wait_s=0.021)
    assert not early.shed_arrival(0.050, predicted_wait_s=0.0)  # the head's wait counts only once overloaded


def test_the_onset_setting_reaches_the_guard(settings, store, mysql):
    custom = replace(settings, api_queue_target_ms=10.0, api_queue_onset_ms=20.0)
    app = create_app(custom, finder=Finder(store, mysql, custom))
    assert app.wsgi_app.guard.onset_s == pytest.approx(0.020)


def test_codel_stays_calm_when_some_request_waits_under_the_target():
    guard = QueueGuard(target_s=0.005, interval_s=0.1)
    for step in range(30):
        wait = 0.002 if step % 10 == 0 else 0.020
        assert not guard.shed(wait, now=step * 0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shedding(settings, store, mysql):
    """An app whose admission uses a test clock; requests carry the worker's stamps in the environ."""
    custom = replace(
        settings,
        api_queue_target_ms=5.0,
        api_queue_interval_ms=100.0,
        api_request_deadline_ms=500.0,
        api_trust_request_start=True,  # behind a proxy that stamps X-Request-Start
    )
    app = create_app(custom, finder=Finder(store, mysql, custom))
    admission: Admission = app.wsgi_app  # type: ignore[assignment]
    clock = Clock()
    admission.clock = clock
    admission.wall = lambda: NOW + clock.now
    client = app.test_client()

    def get(path: str, waited: float, base_url: str = "http://localhost", headers: dict[str, str] | None = None):
        stamps = {QUEUED_AT: clock.now - waited, STARTED_AT: clock.now}
        return client.get(path, base_url=base_url, environ_base=stamps, headers=headers)

    return get, clock, client


def test_behind_an_arrival_stage_a_thread_serves_what_was_let_in(shedding, store):
    get, clock, client = shedding
    client.application.wsgi_app.arrival_stage_runs()  # as api.worker does for gthread over plain HTTP
    store.client.set(store.pointer_key, 1)
    store.apply([UserAdded(USER, Version(USER.since_ms, 0, 0))], 1)
    assert get("/user/KrishnaMohan", waited=0.050).status_code == 200
    clock.now += 0.2  # overloaded: that interval's shortest wait was 50 ms
    assert get("/user/KrishnaMohan", waited=0.050).status_code == 200  # waited in the worker: served
    # Waited 50 ms behind a proxy before gunicorn accepted it: the arrival stage never judged that.
    proxy = {"X-Request-Start": f"{NOW + clock.now - 0.051:.6f}"}
    assert_rejected(get("/user/KrishnaMohan", waited=0.001, headers=proxy), "overloaded")
    assert outcome(samples(client), "shed") == 1


def samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics", base_url=OPS).get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def outcome(seen, label: str) -> float:
    return seen[("ums_api_admission_total", (("outcome", label), ("stage", "dequeue")))]


def assert_rejected(response, slug: str) -> None:
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["type"].endswith("/" + slug)
    assert "X-Ums-Source" not in response.headers  # the route never ran


def test_the_excess_is_shed_with_503_and_the_api_serves_again(shedding, store, mysql):
    get, clock, client = shedding
    store.client.set(store.pointer_key, 1)
    store.apply([UserAdded(USER, Version(USER.since_ms, 0, 0))], 1)
    assert get("/user/KrishnaMohan", waited=0.050).status_code == 200  # no interval over yet
    clock.now += 0.2
    assert_rejected(get("/user/KrishnaMohan", waited=0.050), "overloaded")
    # Overloaded, a short wait is still served; the ops port is never shed.
    assert get("/user/KrishnaMohan", waited=0.001).status_code == 200
    assert get("/readyz", waited=0.050, base_url=OPS).status_code == 200
    clock.now += 0.2
    # An interval that shed stays overloaded; the next, with a short wait and nothing shed, ends it.
    assert get("/user/KrishnaMohan", waited=0.001).status_code == 200
    clock.now += 0.2
    assert get("/user/KrishnaMohan", waited=0.050).status_code == 200
    seen = samples(client)
    assert outcome(seen, "admitted") == 4 and outcome(seen, "shed") == 1
    # Rejected requests never reached Flask: only the four served ones are counted as answered.
    served = (
        "ums_api_requests_total",
        (("method", "GET"), ("route", "/user/<name:name>"), ("source", "projection"), ("status", "200")),
    )
    assert seen[served] == 4


def test_a_request_past_its_deadline_is_not_served(shedding, mysql):
    get, _, client = shedding
    assert_rejected(get("/user/NobodyAtAll", waited=0.6), "deadline-exceeded")
    assert mysql.calls == 0  # not looked up anywhere
    assert_rejected(
        get("/user/NobodyAtAll", waited=0.0, headers={"X-Request-Start": f"t={int((NOW + 1000 - 2) * 1e6)}"}),
        "deadline-exceeded",
    )
    assert get("/user/NobodyAtAll", waited=0.0).status_code == 404
    seen = samples(client)
    assert outcome(seen, "expired") == 2 and outcome(seen, "admitted") == 1


def test_the_queue_wait_is_observed_from_each_stamp(shedding):
    get, _, client = shedding
    get("/user/NobodyAtAll", waited=0.003)
    get("/user/NobodyAtAll", waited=0.001, headers={"X-Request-Start": f"{NOW + 1000 - 0.020:.6f}"})
    seen = samples(client)
    assert seen[("ums_api_queue_wait_seconds_count", (("stamp", "accept"),))] == 2
    assert seen[("ums_api_queue_wait_seconds_sum", (("stamp", "accept"),))] == pytest.approx(0.004)
    assert seen[("ums_api_queue_wait_seconds_count", (("stamp", "proxy"),))] == 1
    assert seen[("ums_api_queue_wait_seconds_sum", (("stamp", "proxy"),))] == pytest.approx(0.020, abs=1e-5)


def test_an_untrusted_request_start_is_ignored(settings, store, mysql):
    assert settings.api_trust_request_start is False  # the default: a client can send the header
    client = create_app(settings, finder=Finder(store, mysql, settings)).test_client()
    assert client.get("/user/NobodyAtAll", headers={"X-Request-Start": "t=1000000"}).status_code == 404
    assert samples(client).get(("ums_api_queue_wait_seconds_count", (("stamp", "proxy"),)), 0) == 0


def test_requests_without_stamps_are_admitted(client):
    # The Flask test client (or another worker class) gives no stamp: nothing to judge by.
    assert client.get("/user/NobodyAtAll").status_code == 404


@pytest.mark.parametrize(
    "change",
    [
        {"api_queue_target_ms": -1.0},
        {"api_request_deadline_ms": -1.0},
        {"api_queue_interval_ms": 0.0},
        {"api_queue_onset_ms": -1.0},
        {"api_arrival_wait_ms": -1.0},
    ],
)
def test_impossible_limits_are_refused(settings, store, mysql, change):
    custom = replace(settings, **change)
    with pytest.raises(ValueError, match="UMS_API_"):
        create_app(custom, finder=Finder(store, mysql, custom))
