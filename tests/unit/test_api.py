from datetime import UTC, datetime

import redis

from domain import Name, PhoneNumber, User, UserAdded, Version

SINCE = datetime(2022, 9, 1, 10, 0, 0, 250_000, tzinfo=UTC)
KRISHNA = User(Name("KrishnaMohan"), PhoneNumber(9731423166), SINCE)


def project(store, user, generation=1):
    store.client.set(store.pointer_key, generation)
    store.apply([UserAdded(user, Version(user.since_ms, 0, 0))], generation)


def test_user_from_the_projection(client, store):
    project(store, KRISHNA)
    response = client.get("/user/KrishnaMohan")
    assert response.status_code == 200
    assert response.get_json() == {"name": "KrishnaMohan", "phone": 9731423166, "since": "2022-09-01T10:00:00.250Z"}
    assert response.headers["X-Ums-Source"] == "projection"
    assert response.headers["X-Ums-Generation"] == "1"


def test_case_and_trailing_space_find_the_same_user(client, store):
    project(store, KRISHNA)
    for variant in ("krishnamohan", "KRISHNAMOHAN%20%20", "%20KrishnaMohan"):
        assert client.get(f"/user/{variant}").get_json()["name"] == "KrishnaMohan"


def test_miss_falls_back_to_mysql_and_repairs_the_projection(client, store, mysql):
    store.client.set(store.pointer_key, 1)
    mysql.save(KRISHNA)
    first = client.get("/user/KrishnaMohan")
    assert first.status_code == 200 and first.headers["X-Ums-Source"] == "mysql"
    second = client.get("/user/KrishnaMohan")
    assert second.headers["X-Ums-Source"] == "projection"
    assert second.get_json() == first.get_json()


def test_unknown_name_is_404_problem(client, store):
    store.client.set(store.pointer_key, 1)
    response = client.get("/user/Nobody%20Here")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"].endswith("/user-not-found")


def test_invalid_name_is_400_problem(client):
    response = client.get("/user/short")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 400


def test_redis_down_answers_from_mysql(client, store, mysql, monkeypatch):
    mysql.save(KRISHNA)

    def broken(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(store.client, "get", broken)
    response = client.get("/user/KrishnaMohan")
    assert response.status_code == 200
    assert response.headers["X-Ums-Source"] == "mysql"


def test_both_down_is_503_with_retry_after(client, store, mysql, monkeypatch):
    mysql.down = True

    def broken(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(store.client, "get", broken)
    response = client.get("/user/KrishnaMohan")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.mimetype == "application/problem+json"


def test_unknown_route_and_wrong_method_are_problems(client):
    assert client.get("/nowhere").mimetype == "application/problem+json"
    response = client.post("/user/KrishnaMohan")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_head_works(client, store):
    project(store, KRISHNA)
    response = client.head("/user/KrishnaMohan")
    assert response.status_code == 200
    assert response.data == b""
