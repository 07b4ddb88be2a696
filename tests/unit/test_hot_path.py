"""The hot path (api/hot.py) answers exactly what the Flask route answers, and leaves Flask everything else."""

from __future__ import annotations

import urllib.parse
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from api import create_app
from api.finder import Finder
from api.hot import HotPath
from domain import Name, User
from tests.unit.test_api import KRISHNA, project

OPS = {"SERVER_PORT": "9080"}  # the unit settings' ops port: api_bind's port + 1000


@pytest.fixture
def both(settings, store, mysql):
    """The same state behind two apps: the hot path on (as shipped) and off (Flask answers everything)."""
    project(store, KRISHNA)
    mysql.save(User(Name("Only In MySQL"), KRISHNA.phone, KRISHNA.since))
    apps = []
    for on in (True, False):
        chosen = replace(settings, api_hot_path=on)
        apps.append(create_app(chosen, finder=Finder(store, mysql, chosen)))
    return apps


def flask_calls(app) -> list[str]:
    """Requests that reached Flask's before_request hooks."""
    seen: list[str] = []

    def hook() -> None:
        seen.append("flask")

    app.before_request(hook)
    return seen


def answer(app, path: str, headers: dict[str, str] | None = None, method: str = "GET", environ=None):
    response = app.test_client().open(path, method=method, headers=headers or {}, environ_overrides=environ or {})
    return response.status, list(response.headers.items()), response.get_data()


CASES = [
    ("/user/KrishnaMohan", {}),
    ("/user/krishnamohan%20%20", {}),
    ("/user/Only%20In%20MySQL", {}),
    ("/user/Nobody%20Here", {}),
    ("/user/Nobody%20Here", {"If-None-Match": "*"}),
    ("/user/short", {}),
    ("/user/%FF%FEKrishnaMohan", {}),
    ("/user/Krishna%0AMohan", {}),
    ("/user/Krishna%2FMohan", {}),
    ("/user//KrishnaMohan", {}),
    ("/user/", {}),
    ("/user/" + "x" * 40, {}),
    ("/user/" + "x" * 5000, {}),
    ("/user/KrishnaMohan" + "%20" * 5000, {}),
    ("/user/" + "%20" * 5000 + "KrishnaMohan", {}),
    ("/user/KrishnaMohan?min_since=0", {}),
    ("/user/KrishnaMohan?min_since=yesterday", {}),
    ("/user/KrishnaMohan", {"Cache-Control": "no-cache"}),
    ("/user/KrishnaMohan", {"Cache-Control": "max-age=0"}),
    ("/user/KrishnaMohan", {"Cache-Control": "max-age=60"}),
    ("/user/KrishnaMohan", {"If-None-Match": "*"}),
    ("/user/KrishnaMohan", {"If-None-Match": '"nope", W/"nope2"'}),
    ("/user/KrishnaMohan", {"X-Big": "y" * 17000}),
]


@pytest.mark.parametrize(("path", "headers"), CASES)
def test_every_answer_is_the_flask_routes(both, path, headers):
    hot, plain = both
    assert answer(hot, path, headers) == answer(plain, path, headers)


@pytest.mark.parametrize("raw", ["/user/\xff\xfeKrishnaMohan", "/user/Krishna\xc3\xa9"])
def test_path_info_as_gunicorn_gives_it(both, raw):
    """gunicorn's PATH_INFO holds the path's bytes as latin-1, invalid UTF-8 included (the test client's cannot)."""
    hot, plain = both
    assert answer(hot, "/user/x", environ={"PATH_INFO": raw}) == answer(plain, "/user/x", environ={"PATH_INFO": raw})


def test_a_conditional_hit_is_the_flask_routes_304(both):
    hot, plain = both
    etag = plain.test_client().get("/user/KrishnaMohan").headers["ETag"]
    for tag in (etag, "W/" + etag, f'"other", {etag}'):
        got = answer(hot, "/user/KrishnaMohan", {"If-None-Match": tag})
        assert got[0] == "304 NOT MODIFIED"
        assert got == answer(plain, "/user/KrishnaMohan", {"If-None-Match": tag})


@pytest.mark.parametrize("method", ["HEAD", "POST", "DELETE"])
def test_other_methods_and_the_ops_port_are_flasks(both, method):
    hot, plain = both
    assert answer(hot, "/user/KrishnaMohan", method=method) == answer(plain, "/user/KrishnaMohan", method=method)
    assert answer(hot, "/user/KrishnaMohan", environ=OPS) == answer(plain, "/user/KrishnaMohan", environ=OPS)
    assert answer(hot, "/user/KrishnaMohan", environ=OPS)[0].startswith("404")


def test_unavailable_sources_and_a_failing_lookup_answer_as_flask_does(both, mysql, monkeypatch):
    hot, plain = both
    mysql.down = True
    for app in both:
        app.extensions["ums_finder"].store.client.flushall()
    assert answer(hot, "/user/Only%20In%20MySQL") == answer(plain, "/user/Only%20In%20MySQL")
    assert answer(hot, "/user/Only%20In%20MySQL")[0].startswith("503")
    for app in both:
        monkeypatch.setattr(app.extensions["ums_finder"], "find", lambda name: 1 / 0)
    assert answer(hot, "/user/Krishna%C3%A9") == answer(plain, "/user/Krishna%C3%A9")
    assert answer(hot, "/user/Krishna%C3%A9")[0].startswith("500")


def test_a_failing_lookup_is_logged_as_flask_logs_it(both, monkeypatch, caplog):
    for app in both:
        monkeypatch.setattr(app.extensions["ums_finder"], "find", lambda name: 1 / 0)
    logged = []
    for app in both:
        caplog.clear()
        app.test_client().get("/user/Krishna%C3%A9")
        logged.append([(r.name, r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records])
    assert logged[0] == logged[1] == [("api", "ERROR", "Exception on /user/Krishna\u00e9 [GET]", True)]


def test_plain_lookups_skip_flask_and_the_rest_reach_it(both):
    hot, _ = both
    seen = flask_calls(hot)
    for path in ("/user/KrishnaMohan", "/user/Nobody%20Here", "/user/Only%20In%20MySQL"):
        hot.test_client().get(path)
    assert seen == []
    hot.test_client().get("/user/KrishnaMohan?min_since=0")
    hot.test_client().get("/user/KrishnaMohan", headers={"Cache-Control": "no-cache"})
    hot.test_client().get("/user/short")
    assert seen == ["flask"] * 3
    assert isinstance(hot.wsgi_app.app, HotPath)  # type: ignore[attr-defined]


def test_the_hot_path_counts_its_answers_as_the_route_does(both):
    for app in both:
        app.test_client().get("/user/KrishnaMohan")
        app.test_client().get("/user/Nobody%20Here")
    lines = []
    for app in both:
        text = app.test_client().get("/metrics", environ_overrides=OPS).get_data(as_text=True)
        lines.append(sorted(x for x in text.splitlines() if x.startswith("ums_api_requests_total")))
    assert lines[0] == lines[1]
    assert (
        'ums_api_requests_total{method="GET",route="/user/<name:name>",source="projection",status="200"} 1.0'
        in (lines[0])
    )


@hyp_settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(raw=st.binary(max_size=40), cache=st.sampled_from([None, "no-cache", "max-age=0", "no-store", "max-age=9"]))
def test_any_path_is_answered_as_flask_answers_it(both, raw, cache):
    hot, plain = both
    path = "/user/" + urllib.parse.quote_from_bytes(raw, safe="")
    headers = {"Cache-Control": cache} if cache else {}
    assert answer(hot, path, headers) == answer(plain, path, headers)
