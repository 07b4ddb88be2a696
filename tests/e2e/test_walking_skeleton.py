"""End to end: gunicorn and the consumer as processes, events published by the AddService stand-in."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from domain import Name, PhoneNumber, User
from tests.conftest import CLUSTER_TOO
from tests.helpers import wait_until

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster


def test_published_user_is_visible_within_two_seconds(api, consumer_process, addservice, name_tag):
    name = f"{name_tag} Krishna"
    # The consumer has joined once a first event shows up; time the second one.
    addservice.add_many([User(Name(f"{name_tag} warm up"), PhoneNumber(9000000001), datetime.now(UTC))])
    wait_until(
        lambda: api.get(f"/user/{name_tag} warm up").headers.get("X-Ums-Source") == "projection",
        30,
        "warm-up user in the projection",
    )

    started = time.monotonic()
    addservice.add_many([User(Name(name), PhoneNumber(9731423166), datetime.now(UTC))])
    # The stand-in also saved the user in MySQL; only the projection may answer here.
    response = wait_until(
        lambda: (r := api.get(f"/user/{name}")).headers.get("X-Ums-Source") == "projection" and r,
        2.0,
        "the user in the projection",
        interval=0.02,
    )
    elapsed = time.monotonic() - started
    assert response.json()["phone"] == 9731423166
    assert elapsed < 2.0


def test_user_only_in_mysql_is_found(api, mysql_writer, name_tag):
    name = f"{name_tag} sql only"
    mysql_writer.upsert_many([User(Name(name), PhoneNumber(9812345678), datetime.now(UTC))])
    response = api.get(f"/user/{name}")
    assert response.status_code == 200
    assert response.json()["phone"] == 9812345678


def test_unknown_valid_name_is_404_and_short_is_400(api, name_tag):
    unknown = api.get(f"/user/{name_tag} never added")
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"] == "application/problem+json"
    short = api.get("/user/short")
    assert short.status_code == 400
    assert short.headers["Content-Type"] == "application/problem+json"
