"""The API's contract on the real stack: every status code, hostile names on both paths, degradation."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
import unicodedata
import urllib.parse
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from adapters.generations import Generations
from domain import Name, PhoneNumber, User, UserAdded, Version, canonical_name
from tests.conftest import CLUSTER_TOO
from tests.helpers import free_port

SINCE = datetime(2022, 9, 1, 10, 0, 0, 123_000, tzinfo=UTC)


def raw_get(base: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the path sent byte for byte (no client-side normalisation of dots or escapes)."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def users(mysql_writer, name_tag):
    made = [
        User(Name(n), PhoneNumber(9_700_000_000 + i), SINCE)
        for i, n in enumerate([f"Alice {name_tag}", f"Jos\u00e9 {name_tag}", f"Bob/Slash {name_tag}"])
    ]
    mysql_writer.upsert_many(made)
    return made


@pytest.fixture
def warm(store, users):
    Generations(store).ensure()
    store.apply([UserAdded(u, Version.from_mysql(u.since_ms)) for u in users], 1)
    return store


@CLUSTER_TOO  # single Redis and Redis Cluster
def test_every_status_code(start_api, settings, warm, users, name_tag):
    api = start_api()
    ok = api.get(f"/user/Alice {name_tag}")
    assert ok.status_code == 200 and ok.headers["X-Ums-Source"] == "projection"
    assert ok.json() == {"name": f"Alice {name_tag}", "phone": 9_700_000_000, "since": "2022-09-01T10:00:00.123Z"}
    assert api.get(f"/user/Alice {name_tag}", headers={"If-None-Match": ok.headers["ETag"]}).status_code == 304
    assert api.get(f"/user/{name_tag} nobody").status_code == 404
    assert api.get("/user/short").status_code == 400
    assert raw_get(api.base, "/user/" + "a" * 20_000)[0] == 414  # gunicorn's bound (UMS_API_LIMIT_REQUEST_LINE)
    too_long = api.get("/user/" + "a" * 5_000)  # under gunicorn's bound: the app's problem+json
    assert too_long.status_code == 414 and too_long.headers["Content-Type"] == "application/problem+json"
    assert api.get("/user/KrishnaMohan", headers={"X-Big": "b" * 20_000}).status_code == 431
    assert requests.post(f"{api.base}/user/KrishnaMohan", timeout=5).status_code == 405
    head = requests.head(f"{api.base}/user/Alice {name_tag}", timeout=5)
    assert head.status_code == 200 and head.content == b""

    dead = start_api(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", mysql_port=free_port()))
    started = time.monotonic()
    down = dead.get(f"/user/Alice {name_tag}")
    assert down.status_code == 503 and down.headers["Retry-After"]
    assert time.monotonic() - started < 1.0
    for response in (down, api.get("/user/short"), api.get(f"/user/{name_tag} nobody")):
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["type"].startswith("https://")


def hostile_paths(tag: str) -> list[str]:
    jose = f"Jos\u00e9 {tag}"
    nfd = urllib.parse.quote(unicodedata.normalize("NFD", jose))
    nfc = urllib.parse.quote(jose)
    return [
        f"/user/Alice%20{tag}",
        f"/user/alice%20{tag}",
        f"/user/ALICE%20{tag}%20%20",
        f"/user/%20alice%20{tag}",
        f"/user/{nfd}",
        f"/user/{nfc}",
        f"/user/Bob%2FSlash%20{tag}",
        "/user/Alice",
        "/user/alice",
        "/user/alice%20",
        "/user/'%20OR%20'1'%3D'1",
        "/user/%27%20OR%20%271%27%3D%271%27%20--%20",
        "/user/%2e%2e%2f",
        "/user/..%2F..%2F..%2Fetc%2Fpasswd",
        "/user/a%2Fb",
        "/user/%00",
        f"/user/Alice%00{tag}",
        f"/user/Alice%0d%0a{tag}",
        f"/user/Alice%E2%80%8F{tag}",
        f"/user/%E2%80%AEAlice{tag}",
        "/user/" + "a" * 3_000,  # longer request lines get 414 (test_every_status_code)
        "/user/%ff%fe%fd%fc%fb%fa%f9%f8",
        "/user/" + "%F0%9F%98%80" * 9,
        "/user/%F0%9F%98%80" * 3,
    ]


@CLUSTER_TOO  # single Redis and Redis Cluster
def test_hostile_names_get_the_same_answer_on_both_paths(start_api, settings, warm, users, name_tag):
    projection_api = start_api()
    mysql_api = start_api(replace(settings, key_prefix=f"empty-{uuid.uuid4().hex[:8]}"))  # flushed projection
    for path in hostile_paths(name_tag):
        a_status, _, a_body = raw_get(projection_api.base, path)
        b_status, b_headers, b_body = raw_get(mysql_api.base, path)
        assert a_status in (200, 400, 404), (path, a_status, a_body[:200])
        assert (a_status, a_body) == (b_status, b_body), path
        if a_status == 200:
            wanted = canonical_name(urllib.parse.unquote(path.removeprefix("/user/"), errors="strict"))
            assert canonical_name(json.loads(a_body)["name"]) == wanted, path
            assert b_headers["x-ums-source"] == "mysql"


def stack_pid(name: str) -> int:
    return int(Path(os.environ["UMS_STACK_DIR"], name).read_text())


# On a single Redis only: what is tested is the MySQL path's timeouts, the same whichever Redis
# answered the miss first (the Cluster read path is the other contract tests' subject).
def test_mariadb_stopped_gives_fast_503_and_no_worker_timeout(start_api, warm, users, name_tag):
    api = start_api(UMS_API_TIMEOUT="3")
    assert api.get(f"/user/{name_tag} warmup miss").status_code == 404  # pool connected
    pid = stack_pid("mariadb/mysqld.pid")
    os.kill(pid, signal.SIGSTOP)
    try:
        slowest = 0.0
        answers = []
        deadline = time.monotonic() + 4  # longer than the workers' 3 s timeout
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = api.get(f"/user/{name_tag} miss {n:05d}")
            slowest = max(slowest, time.monotonic() - started)
            answers.append(response.status_code)
            n += 1
        # The projection still answers for the users it holds.
        assert api.get(f"/user/Alice {name_tag}").status_code == 200
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"MariaDB stopped: {len(answers)} misses, slowest {slowest * 1000:.0f} ms")
    assert set(answers) == {503}
    assert slowest < 1.0
    assert "WORKER TIMEOUT" not in api.log.read_text()


@CLUSTER_TOO  # single Redis and Redis Cluster
def test_redis_stopped_answers_come_from_mysql(start_api, settings, users, name_tag):
    api = start_api(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    for _ in range(20):
        response = api.get(f"/user/alice {name_tag}")
        assert response.status_code == 200
        assert response.headers["X-Ums-Source"] == "mysql"
    ready = api.ops_get("/readyz").json()
    assert ready == {"ready": True, "sources": {"projection": False, "mysql": True}}
