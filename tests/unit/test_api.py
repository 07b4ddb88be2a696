import time
from datetime import UTC, datetime

import pytest
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
    for variant in ("krishnamohan", "KRISHNAMOHAN%20%20"):
        assert client.get(f"/user/{variant}").get_json()["name"] == "KrishnaMohan"


def test_a_leading_space_is_another_name_as_in_mysql(client, store):
    project(store, KRISHNA)
    assert client.get("/user/%20KrishnaMohan").status_code == 404


def test_miss_falls_back_to_mysql_without_writing_by_default(client, store, mysql):
    store.client.set(store.pointer_key, 1)
    mysql.save(KRISHNA)
    first = client.get("/user/KrishnaMohan")
    assert first.status_code == 200 and first.headers["X-Ums-Source"] == "mysql"
    assert client.get("/user/KrishnaMohan").headers["X-Ums-Source"] == "mysql"  # the API's user only reads
    assert store.get(KRISHNA.name.canonical, 1) is None


def test_miss_falls_back_to_mysql_and_repairs_the_projection_when_asked(settings, store, mysql):
    from dataclasses import replace

    from api import create_app
    from api.finder import Finder

    repairing = replace(settings, read_repair=True)
    client = create_app(repairing, finder=Finder(store, mysql, repairing)).test_client()
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


@pytest.mark.parametrize("raw", [b"v9:a value of a later release", b"\x1a\x00\x01"])
def test_a_value_the_api_cannot_read_is_answered_from_mysql_and_left_alone(settings, store, mysql, raw):
    from dataclasses import replace

    from api import create_app
    from api.finder import Finder

    repairing = replace(settings, read_repair=True)  # even so, nothing is written over it
    client = create_app(repairing, finder=Finder(store, mysql, repairing)).test_client()
    store.client.set(store.pointer_key, 1)
    key = store.key(1, KRISHNA.name.canonical)
    store.client.set(key, raw)
    mysql.save(KRISHNA)
    response = client.get("/user/KrishnaMohan")
    assert response.status_code == 200 and response.headers["X-Ums-Source"] == "mysql"
    assert response.get_json()["phone"] == KRISHNA.phone.value
    assert store.client.get(key) == raw


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


def test_etag_and_if_none_match_give_304(client, store):
    project(store, KRISHNA)
    first = client.get("/user/KrishnaMohan")
    assert first.headers["ETag"]
    assert "max-age=" in first.headers["Cache-Control"]
    again = client.get("/user/KrishnaMohan", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.data == b""
    # Weak comparison: a cache that weakened the tag, in a list, still gets 304; another tag 200.
    weak = client.get("/user/KrishnaMohan", headers={"If-None-Match": f'"other", W/{first.headers["ETag"]}'})
    assert weak.status_code == 304 and weak.headers["ETag"] == first.headers["ETag"]
    assert client.get("/user/KrishnaMohan", headers={"If-None-Match": 'W/"other"'}).status_code == 200


def test_400_and_404_say_how_long_they_may_be_cached(client, store):
    store.client.set(store.pointer_key, 1)
    assert client.get("/user/Nobody%20Here").headers["Cache-Control"] == "public, max-age=2"
    assert client.get("/user/a%0Ab").headers["Cache-Control"] == "public, max-age=5"
    assert "max-age" in client.get("/nothing/here").headers["Cache-Control"]


def test_unknown_names_are_remembered_briefly(client, store, mysql):
    store.client.set(store.pointer_key, 1)
    for _ in range(5):
        assert client.get("/user/Nobody%20Here").status_code == 404
    assert mysql.calls == 1


def test_dead_redis_is_skipped_by_the_breaker(client, store, mysql, monkeypatch):
    mysql.save(KRISHNA)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise redis.TimeoutError("hung")  # only hangs open the breaker

    monkeypatch.setattr(store.client, "get", broken)
    for _ in range(10):
        assert client.get("/user/KrishnaMohan").status_code == 200
    assert len(calls) == 2  # the breaker opened after two failures


def test_a_refused_redis_does_not_open_the_breaker(client, store, mysql, monkeypatch):
    """A refusal costs nothing: every request tries Redis again, so none is turned away once it is back."""
    mysql.save(User(Name("KrishnaMohan"), PhoneNumber(9731423166), SINCE))
    calls = []

    def refused(*args, **kwargs):
        calls.append(1)
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(store.client, "get", refused)
    for _ in range(10):
        assert client.get("/user/KrishnaMohan").status_code == 200
    assert len(calls) == 10


OPS = "http://localhost:9080"  # the unit settings' ops port: api_bind's port + 1000


def test_readyz_says_which_source_answers(client, mysql):
    body = client.get("/readyz", base_url=OPS).get_json()
    assert body == {"ready": True, "sources": {"projection": True, "mysql": True}}
    mysql.down = True
    body = client.get("/readyz", base_url=OPS).get_json()
    assert body["sources"]["mysql"] is False and body["ready"] is True


def test_operational_endpoints_answer_on_the_ops_port_only(client, store):
    project(store, KRISHNA)
    for path in ("/metrics", "/livez", "/readyz"):
        assert client.get(path).status_code == 404, path
        assert client.get(path, base_url=OPS).status_code == 200, path
    for path in ("/user/KrishnaMohan", "/openapi.json"):
        assert client.get(path).status_code == 200, path
        assert client.get(path, base_url=OPS).status_code == 404, path
    # A Host header does not move a request to the other port.
    assert client.get("/metrics", headers={"Host": "localhost:9080"}).status_code == 404


def test_a_misconfigured_link_keeps_the_api_unready_with_one_log_line(client, mysql, caplog):
    import pymysql

    def refused() -> None:
        raise pymysql.OperationalError(1045, "Access denied for user 'ums_find_ro'@'localhost' (using password: YES)")

    mysql.ping = refused
    for _ in range(3):
        response = client.get("/readyz", base_url=OPS)
        assert response.status_code == 503
        assert response.get_json()["misconfigured"] == {"mysql": "authentication failed"}
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    assert "UMS_MYSQL_USER/_PASSWORD" in caplog.text


def test_an_outage_after_a_link_answered_is_not_a_misconfiguration(client, mysql):
    import pymysql

    assert client.get("/readyz", base_url=OPS).status_code == 200

    def refused() -> None:
        raise pymysql.OperationalError(1045, "Access denied (a password rotated under a running process)")

    mysql.ping = refused  # the fallback's job: Redis answers, the API stays ready
    body = client.get("/readyz", base_url=OPS).get_json()
    assert body["ready"] is True and "misconfigured" not in body


def test_a_column_with_another_collation_keeps_the_api_unready(client, mysql, caplog):
    mysql.collation = "utf8mb4_0900_ai_ci"
    response = client.get("/readyz", base_url=OPS)
    assert response.status_code == 503
    assert response.get_json()["collation_mismatch"] == "utf8mb4_0900_ai_ci"
    assert "UMS_NAME_COLLATION" in caplog.text
    mysql.collation = ""
    assert client.get("/readyz", base_url=OPS).status_code == 200


def test_the_collation_guard_asks_again_while_the_column_is_missing(client, mysql):
    mysql.name_collation = lambda: ""  # no ums_users yet: nothing to confirm
    assert client.get("/readyz", base_url=OPS).status_code == 200
    mysql.name_collation = lambda: "utf8mb4_0900_ai_ci"  # then the AddService creates it, collated otherwise
    assert client.get("/readyz", base_url=OPS).get_json()["collation_mismatch"] == "utf8mb4_0900_ai_ci"


@pytest.mark.parametrize("path", ["/user/Renee%0ADubois", "/user/Renee Dubois%0A", "/user/%0D%0ARenee Dubois"])
def test_cr_and_lf_in_the_path_are_400_invalid_name(client, path):
    response = client.get(path)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"].endswith("invalid-name")


def test_the_generation_is_not_read_under_a_lock(store, settings):
    """While one request refreshes the live generation (Redis hung), others use the last value at once."""
    import threading

    from api.finder import GenerationCache

    entered, release = threading.Event(), threading.Event()
    reads = iter([7, None])

    def slow_live_generation():
        value = next(reads)
        if value is None:
            entered.set()
            release.wait(5)
        return value

    cache = GenerationCache(store, ttl_s=0.0)
    store.live_generation = slow_live_generation
    assert cache.get() == 7
    refresher = threading.Thread(target=cache.get)
    refresher.start()
    assert entered.wait(5)
    started = time.monotonic()
    assert cache.get() == 7  # not blocked behind the refresher
    assert time.monotonic() - started < 0.5
    release.set()
    refresher.join(5)


def test_long_request_target_is_414_problem(client):
    response = client.get("/user/" + "a" * 20_000)
    assert response.status_code == 414
    assert response.mimetype == "application/problem+json"


def test_huge_headers_are_431_problem(client):
    response = client.get("/user/KrishnaMohan", headers={"X-Big": "b" * 17_000})
    assert response.status_code == 431
    assert response.mimetype == "application/problem+json"


def test_metrics_count_requests_by_source(client, store):
    project(store, KRISHNA)
    client.get("/user/KrishnaMohan")
    text = client.get("/metrics", base_url=OPS).get_data(as_text=True)
    assert 'ums_api_requests_total{method="GET",route="/user/<name:name>",source="projection",status="200"} 1.0' in text
    assert "ums_api_request_duration_seconds_bucket" in text


def test_openapi_document_is_served(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]["/user/{name}"]["get"]["responses"]) >= {"200", "400", "404", "503"}
