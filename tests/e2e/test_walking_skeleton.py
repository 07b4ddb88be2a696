"""End to end: gunicorn and the consumer as processes, events published by the AddService stand-in."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from consumer.kafka import make_producer
from domain import Name, PhoneNumber, User
from tests.helpers import env_of, free_port, wait_until
from ums_find.addservice import AddService

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def processes(settings, tmp_path):
    """Start the consumer and gunicorn; yield the API's base URL; stop both with SIGTERM."""
    port = free_port()
    env = env_of(settings, UMS_API_BIND=f"127.0.0.1:{port}", UMS_API_WORKERS="2", UMS_LOG_JSON="false")
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("consumer", "api")}  # noqa: SIM115
    procs = {
        "consumer": subprocess.Popen(
            [str(BIN / "ums-find"), "consume"], env=env, cwd=ROOT, stdout=logs["consumer"], stderr=subprocess.STDOUT
        ),
        "api": subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"],
            env=env,
            cwd=ROOT,
            stdout=logs["api"],
            stderr=subprocess.STDOUT,
        ),
    }
    base = f"http://127.0.0.1:{port}"

    def api_up():
        try:
            return requests.get(f"{base}/livez", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert procs["api"].poll() is None, (tmp_path / "api.log").read_text()
            return False

    wait_until(api_up, 30, "the API to answer")
    yield base
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        assert proc.wait(timeout=20) == 0, f"{name} exited badly:\n" + (tmp_path / f"{name}.log").read_text()[-3000:]
    for log in logs.values():
        log.close()


@pytest.fixture
def addservice(settings, mysql_writer):
    producer = make_producer(settings)
    yield AddService(mysql_writer, producer, settings.topic)
    producer.flush(10)


def test_published_user_is_visible_within_two_seconds(processes, addservice, name_tag):
    name = f"{name_tag} Krishna"
    # The consumer has joined once a first event shows up; time the second one.
    addservice.add_many([User(Name(f"{name_tag} warm up"), PhoneNumber(9000000001), datetime.now(UTC))])
    wait_until(lambda: requests.get(f"{processes}/user/{name_tag} warm up").status_code == 200, 30, "warm-up user")

    started = time.monotonic()
    addservice.add_many([User(Name(name), PhoneNumber(9731423166), datetime.now(UTC))])
    # The stand-in also saved the user in MySQL; only the projection may answer here.
    response = wait_until(
        lambda: (r := requests.get(f"{processes}/user/{name}")).headers.get("X-Ums-Source") == "projection" and r,
        2.0,
        "the user in the projection",
        interval=0.02,
    )
    elapsed = time.monotonic() - started
    assert response.json()["phone"] == 9731423166
    assert elapsed < 2.0


def test_user_only_in_mysql_is_found(processes, mysql_writer, name_tag):
    name = f"{name_tag} sql only"
    mysql_writer.upsert_many([User(Name(name), PhoneNumber(9812345678), datetime.now(UTC))])
    response = requests.get(f"{processes}/user/{name}")
    assert response.status_code == 200
    assert response.json()["phone"] == 9812345678


def test_unknown_valid_name_is_404_and_short_is_400(processes, name_tag):
    unknown = requests.get(f"{processes}/user/{name_tag} never added")
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"] == "application/problem+json"
    short = requests.get(f"{processes}/user/short")
    assert short.status_code == 400
    assert short.headers["Content-Type"] == "application/problem+json"
