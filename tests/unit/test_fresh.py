"""Fresh reads (issue 23): min_since parsing, Cache-Control, which source answers, the per-worker limit."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import create_app
from api.finder import Finder
from api.fresh import MAX_EPOCH_MS, forces_mysql, parse_min_since
from domain import Name, PhoneNumber, User
from domain.model import epoch_ms
from tests.unit.test_api import KRISHNA, project

NEWER = replace(KRISHNA, phone=PhoneNumber(9800000009), since=KRISHNA.since + timedelta(seconds=1))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("1661996400250", 1661996400250),
        (str(MAX_EPOCH_MS), MAX_EPOCH_MS),
        ("2022-09-01T01:40:00.250Z", 1661996400250),
        ("2022-09-01t01:40:00.250z", 1661996400250),
        ("2022-09-01T03:40:00.2509+02:00", 1661996400250),  # floored to the millisecond
        ("2022-08-31T23:40:00.25-02:00", 1661996400250),
        ("2016-12-31T23:59:60Z", 1483228800000),  # a leap second counts as the next minute's start
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_min_since_forms(raw, expected):
    assert parse_min_since(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "-1", "1.5", "1e3", str(MAX_EPOCH_MS + 1), "2022-09-01", "2022-09-01T01:40:00", "2022-13-01T00:00:00Z",
     "2022-09-01 01:40:00Z", "2022-09-01T01:40:00+24:00", "\uff12\uff10\uff12\uff12", "now", "9" * 5000],
)  # fmt: skip
def test_bad_min_since_is_refused(raw):
    with pytest.raises(ValueError):
        parse_min_since(raw)


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_and_epoch_agree(moment):
    assert parse_min_since(moment.isoformat()) == epoch_ms(moment)


@pytest.mark.parametrize(
    ("header", "forced"),
    [(None, False), ("", False), ("no-cache", True), ("No-Cache, max-age=5", True), ("max-age=0", True),
     ('max-age="0"', True), ("max-age=10", False), ("no-store", False), ("private", False)],
)  # fmt: skip
def test_cache_control_directives(header, forced):
    assert forces_mysql(header) is forced


def test_min_since_met_by_the_projection(client, store, mysql):
    project(store, KRISHNA)
    response = client.get(f"/user/KrishnaMohan?min_since={KRISHNA.since_ms}")
    assert response.status_code == 200 and response.headers["X-Ums-Source"] == "projection"
    assert mysql.calls == 0


def test_min_since_past_the_projection_is_answered_by_mysql(client, store, mysql):
    project(store, KRISHNA)
    mysql.save(NEWER)
    for value in (str(NEWER.since_ms), "2022-09-01T10:00:01.250Z"):
        response = client.get("/user/KrishnaMohan", query_string={"min_since": value})
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-Ums-Source"] == "mysql"
        assert response.get_json()["phone"] == NEWER.phone.value
    assert client.get("/user/KrishnaMohan").get_json()["phone"] == KRISHNA.phone.value  # ordinary reads unchanged


def test_min_since_nobody_has_is_409_never_an_old_answer(client, store, mysql):
    project(store, KRISHNA)
    mysql.save(KRISHNA)
    response = client.get(f"/user/KrishnaMohan?min_since={KRISHNA.since_ms + 1}")
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["type"].endswith("/not-fresh-enough")
    assert "phone" not in response.get_json()


def test_min_since_for_a_name_mysql_does_not_hold_is_404_not_cached(client, store, mysql):
    store.client.set(store.pointer_key, 1)
    assert client.get("/user/KrishnaMohan").headers["X-Ums-Source"] == "mysql"  # now remembered as unknown
    response = client.get("/user/KrishnaMohan?min_since=1")
    assert response.status_code == 404 and response.headers["Cache-Control"] == "no-store"
    assert mysql.calls == 2  # the negative cache is not asked


def test_min_since_reads_past_the_negative_cache_and_clears_it(client, store, mysql):
    store.client.set(store.pointer_key, 1)
    assert client.get("/user/KrishnaMohan").status_code == 404
    mysql.save(KRISHNA)
    assert client.get("/user/KrishnaMohan").headers["X-Ums-Source"] == "unknown-cache"
    assert client.get(f"/user/KrishnaMohan?min_since={KRISHNA.since_ms}").status_code == 200
    assert client.get("/user/KrishnaMohan").status_code == 200


@pytest.mark.parametrize("header", ["no-cache", "max-age=0"])
def test_no_cache_is_answered_by_mysql_and_not_stored(client, store, mysql, header):
    project(store, KRISHNA)
    mysql.save(NEWER)
    response = client.get("/user/KrishnaMohan", headers={"Cache-Control": header})
    assert response.status_code == 200
    assert response.headers["X-Ums-Source"] == "mysql"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["phone"] == NEWER.phone.value


@pytest.mark.parametrize("query", ["min_since=", "min_since=yesterday", "min_since=1&min_since=2", "min_since=-5"])
def test_bad_min_since_is_400_naming_it(client, store, query):
    project(store, KRISHNA)
    response = client.get(f"/user/KrishnaMohan?{query}")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "min_since" in response.get_json()["detail"]


class BlockingUsers:
    """A MySQL double whose finds wait until released: reads pile up inside the limit."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.inside = threading.Semaphore(0)
        self.release = threading.Event()

    def find(self, name: Name) -> User | None:
        self.inside.release()
        assert self.release.wait(10)
        return self.user


def test_forced_reads_past_the_limit_get_503_and_ordinary_fallback_still_answers(settings, store):
    mysql = BlockingUsers(KRISHNA)
    limited = replace(settings, fresh_read_limit=2, fresh_read_wait_s=0.05)
    app = create_app(limited, finder=Finder(store, mysql, limited))  # type: ignore[arg-type]
    store.client.set(store.pointer_key, 1)
    results: list[int] = []

    def forced() -> None:
        results.append(app.test_client().get("/user/KrishnaMohan", headers={"Cache-Control": "no-cache"}).status_code)

    waiting = [threading.Thread(target=forced) for _ in range(2)]
    for thread in waiting:
        thread.start()
    for _ in waiting:
        assert mysql.inside.acquire(timeout=10)  # both slots are taken, their reads wait on MySQL
    excess = app.test_client().get("/user/KrishnaMohan?min_since=1")
    assert excess.status_code == 503
    assert excess.headers["Retry-After"] == "1" and excess.headers["Content-Type"] == "application/problem+json"
    assert excess.get_json()["type"].endswith("/fresh-read-limit")
    ordinary = threading.Thread(target=lambda: results.append(app.test_client().get("/user/KrishnaMohan").status_code))
    ordinary.start()
    assert mysql.inside.acquire(timeout=10)  # the ordinary fallback reached MySQL beside the two forced reads
    mysql.release.set()
    for thread in [*waiting, ordinary]:
        thread.join(10)
    assert results == [200, 200, 200]
    metrics = app.extensions["ums_metrics"].exposition()[0].decode()
    assert 'ums_api_fresh_reads_total{reason="no_cache",served="mysql"} 2.0' in metrics
    assert 'ums_api_fresh_reads_total{reason="min_since",served="limited"} 1.0' in metrics


def test_a_read_past_the_limit_takes_a_slot_freed_within_the_wait(settings, store):
    mysql = BlockingUsers(KRISHNA)
    patient = replace(settings, fresh_read_limit=1, fresh_read_wait_s=10.0)
    app = create_app(patient, finder=Finder(store, mysql, patient))  # type: ignore[arg-type]
    store.client.set(store.pointer_key, 1)
    results: list[int] = []

    def forced() -> None:
        results.append(app.test_client().get("/user/KrishnaMohan", headers={"Cache-Control": "no-cache"}).status_code)

    reads = app.extensions["ums_fresh"]
    take, asking = reads._take, threading.Semaphore(0)

    def observed(slots: threading.BoundedSemaphore) -> bool:
        asking.release()
        return take(slots)

    reads._take = observed
    first, second = threading.Thread(target=forced), threading.Thread(target=forced)
    first.start()
    assert mysql.inside.acquire(timeout=10)  # the only slot is taken
    second.start()
    assert asking.acquire(timeout=10) and asking.acquire(timeout=10)  # the second asks for it while taken
    mysql.release.set()
    for thread in (first, second):
        thread.join(10)
    assert results == [200, 200]


def test_no_fresh_reads_reach_mysql_with_limit_zero(settings, store, mysql):
    off = replace(settings, fresh_read_limit=0)
    client = create_app(off, finder=Finder(store, mysql, off)).test_client()
    project(store, KRISHNA)
    assert client.get(f"/user/KrishnaMohan?min_since={KRISHNA.since_ms}").status_code == 200  # projection suffices
    assert client.get("/user/KrishnaMohan", headers={"Cache-Control": "no-cache"}).status_code == 503
    assert mysql.calls == 0


def test_user_since_is_whole_milliseconds():
    # The comparison with min_since relies on it: a stored since never carries microseconds.
    user = User(Name("KrishnaMohan"), PhoneNumber(9731423166), datetime(2022, 9, 1, 0, 0, 0, 999_999, tzinfo=UTC))
    assert user.since.microsecond == 999_000
