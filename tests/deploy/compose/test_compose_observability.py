"""The alert rules and the dashboard against the compose stack's real Prometheus (issue 24).

Prometheus scrapes the API's ops port and the consumer's metrics port every 5 s
(observability/prometheus/prometheus-compose.yml). It loads the alert rules with one change,
made by the test fixture and said here: UmsConsumerDown's `for` is 10s instead of 5m
(tests/deploy/compose/composerun.py, SHORTENED), so that stopping the consumer fires it within a minute.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
import requests
import yaml

from adapters import clients
from adapters.settings import Settings
from tests.deploy.compose.composerun import SHORTENED, address_of, compose, healthy
from tests.deploy.running import record, timed
from tests.deploy.test_deploy_observability import DASHBOARD, RULES, alerts, panels
from tests.helpers import unique, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]

API = "http://127.0.0.1:8080"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval stands for in these queries
DOWN = "UmsConsumerDown"


def prometheus() -> str:
    return f"http://{address_of('prometheus')}:9090"


def api_v1(base: str, path: str, **params: str) -> Any:
    response = requests.get(f"{base}/api/v1/{path}", params=params, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def alert_state(base: str, name: str) -> str | None:
    """'pending' or 'firing' while the alert is active, None when it is not."""
    states = [a["state"] for a in api_v1(base, "alerts")["alerts"] if a["labels"]["alertname"] == name]
    return states[0] if states else None


def test_prometheus_scrapes_both_ops_ports_with_every_rule_loaded(compose_stack: Settings) -> None:
    base = prometheus()

    def both_up() -> dict[str, str] | None:
        targets = api_v1(base, "targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return health if health == {"ums-find-api": "up", "ums-find-consumer": "up"} else None

    wait_until(both_up, 60, "both targets up", interval=1)
    loaded = {r["name"]: r for g in api_v1(base, "rules")["groups"] for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in alerts(yaml.safe_load(RULES.read_text()))}
    assert loaded[DOWN]["duration"] == 10, "the test rules shorten UmsConsumerDown's `for` to 10s"


def test_consumer_stopped_fires_its_alert_and_it_resolves_after_the_restart(compose_stack: Settings) -> None:
    base = prometheus()
    wait_until(lambda: alert_state(base, DOWN) is None, 60, f"{DOWN} quiet with the consumer up", interval=1)
    compose("stop", "consumer", timeout=120)
    try:
        fired_s = timed(lambda: wait_until(lambda: alert_state(base, DOWN) == "firing", 120, f"{DOWN} firing", 1))
    finally:
        compose("start", "consumer", timeout=120)
    wait_until(lambda: healthy("consumer"), 120, "the consumer healthy again", interval=1)
    resolved_s = timed(lambda: wait_until(lambda: alert_state(base, DOWN) is None, 120, f"{DOWN} resolved", 1))
    record(compose_alert={"alert": DOWN, "for": SHORTENED[DOWN], "firing_after_s": fired_s, "resolved_s": resolved_s})


def events(settings: Settings) -> None:
    """An applied, a stale (the same event again) and a dead-lettered event."""
    name = unique("Panels").replace("-", "")
    event = json.dumps({"name": name, "phone": 9_876_543_210, "since": 1_750_000_000_000}).encode()
    producer = clients.kafka_producer(settings)
    for value in (event, event, b"{not json"):
        producer.produce(settings.topic, value)
    assert producer.flush(30) == 0
    wait_until(lambda: requests.get(f"{API}/user/{name}", timeout=5).status_code == 200, 60, name, interval=0.2)


def lookups() -> None:
    """A lookup answered by the projection, one by MySQL (a miss), a 400. Repeated between
    scrapes: a labelled counter is born at its first request, so a single burst would show
    Prometheus one flat value (rate 0, and 0/0 in the share panels)."""
    assert requests.get(f"{API}/user/KrishnaMohan", timeout=5).status_code == 200
    assert requests.get(f"{API}/user/{unique('Nobody')}", timeout=5).status_code == 404
    assert requests.get(f"{API}/user/x", timeout=5).status_code == 400


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{p['title']} [{t['refId']}]", t["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]


def answers(base: str, expr: str) -> list[float]:
    """The numbers the query returns now (NaN, as from a quantile of no observations, dropped)."""
    result = api_v1(base, "query", query=expr)["result"]
    return [float(r["value"][1]) for r in result if not math.isnan(float(r["value"][1]))]


def test_every_dashboard_query_returns_data_after_traffic(compose_stack: Settings) -> None:
    base = prometheus()
    events(compose_stack)
    queries = dashboard_queries()
    empty = dict(queries)

    def all_answer() -> bool:
        lookups()
        for title, expr in list(empty.items()):
            if answers(base, expr):
                del empty[title]
        return not empty

    with contextlib.suppress(AssertionError):  # the assertion below names the empty ones
        wait_until(all_answer, 90, "every dashboard query to return data", interval=2)
    record(compose_dashboard={"queries": len(queries), "empty": sorted(empty)})
    assert not empty, f"panels whose query returns no data: {empty}"
