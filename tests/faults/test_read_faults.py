"""The read side under dependency faults, 16 concurrent readers against gunicorn: MariaDB restarted, Redis frozen."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pymysql
import pytest
import requests

from adapters.clients import Role, projection_store
from adapters.generations import Generations
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.faults.rig import ROOT
from tests.helpers import ADMISSION_OFF, wait_until

READERS = 16
# Two workers of eight threads: one request slot per reader, so what is measured is the
# service's waiting, not the readers queueing behind each other.
# Admission control off: these tests count every answer but 404/200 (and the outage's 503) as a
# failure, and a loaded machine's thread wake-ups could trip the 10 ms queue target.
API_ENV = {
    "UMS_API_WORKERS": "2",
    "UMS_API_THREADS": "8",
    **ADMISSION_OFF,
}


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int
    source: str
    retry_after: str | None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Readers:
    """`READERS` threads asking for `name(reader, i)` back to back until stopped; every answer kept."""

    def __init__(self, base: str, name: Callable[[int, int], str]) -> None:
        self.base, self.name = base, name
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, args=(n,), daemon=True) for n in range(READERS)]

    def _read(self, reader: int) -> None:
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.monotonic()
            try:
                response = session.get(f"{self.base}/user/{self.name(reader, i)}", timeout=10)
            except requests.RequestException as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                continue
            answer = Answer(
                started,
                time.monotonic(),
                response.status_code,
                response.headers.get("X-Ums-Source", ""),
                response.headers.get("Retry-After"),
            )
            with self._lock:
                self.answers.append(answer)

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def count(self, status: int | None = None, since: float = 0.0) -> int:
        """Answers so far, or those with `status` to requests started at `since` or later."""
        with self._lock:
            return sum((status is None or a.status == status) and a.started >= since for a in self.answers)


def _accepts(settings) -> bool:
    try:
        conn = pymysql.connect(
            host=settings.mysql_host,
            port=settings.mysql_port,
            user=settings.mysql_user,
            password=settings.mysql_password,
            database=settings.mysql_database,
            connect_timeout=1,
        )
    except pymysql.MySQLError:
        return False
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM ums_users LIMIT 1")
    return True


def test_mariadb_restart_under_16_readers_fails_nothing_once_it_accepts(settings, start_api, name_tag):
    """Names the projection lacks go to MySQL; dead pooled connections must not fail anyone after the restart."""
    api = start_api(**API_ENV)
    stack = str(ROOT / "services" / "stack.sh")
    with Readers(api.base, lambda reader, i: f"{name_tag} none {reader:02d} {i:06d}") as readers:
        wait_until(lambda: readers.count() > 500, 30, "the readers to warm every pooled connection")
        subprocess.run([stack, "stop", "mariadb"], check=True)
        stopped = time.monotonic()
        # Down until the readers have met it: restarted at once, MariaDB listened again within
        # 0.2-0.5 s, and a CI run on a busy machine had no request in that window at all.
        wait_until(lambda: readers.count(503, since=stopped) >= 20, 30, "20 readers' requests to meet the outage")
        restart = subprocess.Popen([stack, "up"])
        accepted = wait_until(lambda: _accepts(settings) and time.monotonic(), 90, "MariaDB to accept again")
        assert restart.wait(120) == 0
        after = readers.count()
        wait_until(lambda: readers.count() > after + 2000, 60, "2,000 answers after the restart")
    # Again with no request during the restart: nothing fails to flush the pool, so every
    # pooled connection is dead when the readers come back, and must be noticed before use.
    subprocess.run([stack, "stop", "mariadb"], check=True)
    subprocess.run([stack, "up"], check=True)
    wait_until(lambda: _accepts(settings), 90, "MariaDB to accept again")
    with Readers(api.base, lambda reader, i: f"{name_tag} idle {reader:02d} {i:06d}") as quiet:
        wait_until(lambda: quiet.count() > 1000, 60, "1,000 answers after a quiet restart")
    quiet_failed = [a for a in quiet.answers if a.status != 404]
    print(f"mariadb quiet restart: answers={len(quiet.answers)} failed={len(quiet_failed)}")
    assert not quiet.errors and not quiet_failed, quiet_failed[:5]
    failed_after = [a for a in readers.answers if a.started >= accepted and a.status != 404]
    during = [a for a in readers.answers if stopped <= a.started < accepted]
    unavailable = [a for a in during if a.status == 503]
    print(
        f"mariadb restart: answers={len(readers.answers)} down_for={accepted - stopped:.1f}s "
        f"during={len(during)} 503_during={len(unavailable)} "
        f"after={sum(a.started >= accepted for a in readers.answers)} failed_after={len(failed_after)} "
        f"errors={len(readers.errors)} slowest_503={max((a.seconds for a in unavailable), default=0):.3f}s"
    )
    assert not readers.errors
    assert unavailable and all(a.retry_after for a in unavailable), unavailable[:5]
    assert all(a.status in (404, 503) for a in readers.answers), {a.status for a in readers.answers}
    assert not failed_after, failed_after[:5]


SINCE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_redis_frozen_under_16_readers_costs_each_request_one_timeout(
    settings, start_api, private_redis, mysql_writer, name_tag
):
    """SIGSTOP keeps Redis's socket open but silent: every request waits its own timeout at most, then MySQL answers."""
    settings = replace(settings, redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    store = projection_store(settings, Role.ADMIN)
    users = [User(Name(f"{name_tag} frozen {n:04d}"), PhoneNumber(9_000_000_000 + n), SINCE) for n in range(200)]
    mysql_writer.upsert_many(users)
    generation = Generations(store).ensure()[0].live
    store.apply([UserAdded(u, Version.from_mysql(u.since_ms)) for u in users], generation)
    api = start_api(settings, **API_ENV)
    pid = private_redis.proc.pid
    with Readers(api.base, lambda reader, i: users[(reader * 7919 + i) % len(users)].name.value) as readers:
        wait_until(lambda: readers.count() > 500, 30, "answers from the projection")
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            wait_until(lambda: time.monotonic() - frozen > 10, 15, "10 s of frozen Redis", interval=0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        thawed = time.monotonic()
        wait_until(
            lambda: any(a.source == "projection" and a.started > thawed for a in readers.answers[-200:]),
            30,
            "the projection to answer again",
        )
    during = [a for a in readers.answers if frozen <= a.started < thawed]
    statuses = {a.status for a in readers.answers}
    bad_503 = [a for a in readers.answers if a.status == 503 and not a.retry_after]
    slowest = max(a.seconds for a in during)
    bound = settings.redis_timeout_s + settings.mysql_connect_timeout_s + settings.mysql_read_timeout_s + 0.25
    p99 = sorted(a.seconds for a in during)[int(len(during) * 0.99)]
    from_mysql = sum(a.source == "mysql" for a in during)
    print(
        f"redis frozen 10 s: answers_during={len(during)} from_mysql={from_mysql} "
        f"503={sum(a.status == 503 for a in during)} p99={p99 * 1000:.0f}ms slowest={slowest * 1000:.0f}ms "
        f"bound={bound * 1000:.0f}ms statuses={sorted(statuses)}"
    )
    assert not readers.errors, readers.errors[:3]
    assert statuses <= {200, 503}, statuses
    assert not bad_503
    assert from_mysql > 100, "MySQL did not answer during the freeze"
    assert slowest <= bound, f"a request waited {slowest:.2f} s, more than one Redis timeout plus MySQL"


@pytest.fixture(autouse=True)
def _thaw_on_failure(request):
    """Never leave a stopped process behind a failed assertion."""
    yield
    redis_server = request.node.funcargs.get("private_redis")
    if redis_server is not None and redis_server.proc and redis_server.proc.poll() is None:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
