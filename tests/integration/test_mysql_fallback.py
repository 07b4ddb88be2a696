"""The MySQL fallback against the real MariaDB, through the real app and Redis."""

from datetime import UTC, datetime

import pytest

from adapters.generations import Generations
from api import create_app
from domain import Name, PhoneNumber, User
from tests.conftest import CLUSTER_TOO

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster

SINCE = datetime(2022, 9, 1, 10, 0, 0, 123_000, tzinfo=UTC)


@pytest.fixture
def client(settings, redis_client):
    return create_app(settings).test_client()


def test_user_only_in_mysql_is_found_and_repaired_when_asked(settings, mysql_writer, store, name_tag):
    from dataclasses import replace

    client = create_app(replace(settings, read_repair=True)).test_client()  # off by default (docs/security.md)
    Generations(store).ensure()
    name = f"{name_tag} Only In SQL"
    mysql_writer.upsert_many([User(Name(name), PhoneNumber(9876543210), SINCE)])
    response = client.get(f"/user/{name}")
    assert response.status_code == 200
    assert response.headers["X-Ums-Source"] == "mysql"
    assert response.get_json() == {"name": name, "phone": 9876543210, "since": "2022-09-01T10:00:00.123Z"}
    assert store.get(name.lower(), 1).user.phone.value == 9876543210


@pytest.mark.parametrize("variant", [str.lower, str.upper, lambda n: n + "   "])
def test_mysql_path_uses_the_canonical_rule(client, mysql_writer, store, name_tag, variant):
    name = f"{name_tag} Mixed Case"
    mysql_writer.upsert_many([User(Name(name), PhoneNumber(9876543210), SINCE)])
    response = client.get("/user/" + variant(name))
    assert response.status_code == 200
    assert response.get_json()["name"] == name


def test_sql_injection_is_just_an_unknown_name(client, mysql_writer, name_tag):
    mysql_writer.upsert_many([User(Name(f"{name_tag} victim1"), PhoneNumber(9876543210), SINCE)])
    response = client.get("/user/' OR '1'='1")
    assert response.status_code == 404


def test_unknown_user_is_404(client, name_tag):
    assert client.get(f"/user/{name_tag} nobody at all").status_code == 404
