"""Direct reads (adapters/direct_reads.py) on the real Redis: the store's answers, a connection per thread,
a connection lost under it replaced once, a hang answered by a timeout, and the API wired to them."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis

from adapters import clients
from adapters.clients import Role
from adapters.direct_reads import DirectReads
from adapters.generations import Generations
from adapters.store import ProjectionStore
from adapters.tracking import TrackedReads
from api import create_app
from domain import Name, PhoneNumber, User, UserAdded, Version

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
GENERATION = 1


def added(i: int, phone: int) -> UserAdded:
    return UserAdded(User(Name(f"Direct User {i:03d}"), PhoneNumber(phone), SINCE), Version(1_000 + i, 0, i))


def canonical(i: int) -> str:
    return Name(f"Direct User {i:03d}").canonical


def direct(settings) -> DirectReads:
    reads = DirectReads.of(clients.projection_store(settings, Role.API))
    assert reads is not None
    return reads


def client_id(reads: DirectReads) -> int:
    """The Redis client id of the calling thread's connection."""
    conn = reads._local.conn
    conn.send_command("CLIENT", "ID")
    return int(conn.read_response())


def test_direct_reads_answer_what_the_store_answers(store: ProjectionStore, settings):
    store.apply([added(i, 9_000_000_000 + i) for i in range(20)], GENERATION)
    reads = direct(settings)
    for i in range(25):  # 20 known users, 5 unknown
        assert reads.get(canonical(i), GENERATION) == store.get(canonical(i), GENERATION)
    assert reads.get(canonical(3), GENERATION + 1) is None  # another generation's key


def test_each_thread_reads_on_a_connection_of_its_own(store: ProjectionStore, settings):
    store.apply([added(i, 9_000_000_000 + i) for i in range(50)], GENERATION)
    reads = direct(settings)
    client = clients.redis_client(settings, Role.ADMIN)
    connections: dict[int, int] = {}
    wrong: list[int] = []
    listed = threading.Barrier(5)  # the readers' connections stay open until Redis has listed them
    done = threading.Barrier(5)

    def reader(n: int) -> None:
        for k in range(200):
            i = (n * 13 + k) % 50
            held = reads.get(canonical(i), GENERATION)
            if held is None or held.user is None or held.user.phone.value != 9_000_000_000 + i:
                wrong.append(i)
        connections[n] = client_id(reads)
        listed.wait(30)
        done.wait(30)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    listed.wait(30)
    ids = {int(c["id"]) for c in client.client_list()}
    done.wait(30)
    for t in threads:
        t.join(30)
    assert not wrong, wrong[:5]
    assert len(set(connections.values())) == 4, connections
    assert set(connections.values()) <= ids


def test_a_connection_closed_under_it_is_replaced_and_the_read_answers(store: ProjectionStore, settings):
    store.apply([added(1, 9_000_000_001)], GENERATION)
    reads = direct(settings)
    assert reads.get(canonical(1), GENERATION) is not None
    conn = reads._local.conn
    clients.redis_client(settings, Role.ADMIN).client_kill_filter(_id=client_id(reads))  # as a Redis restart would
    held = reads.get(canonical(1), GENERATION)
    assert held is not None and held.user is not None and held.user.phone.value == 9_000_000_001
    assert reads._local.conn is not conn, "the closed connection was kept"


def test_a_redis_that_does_not_answer_costs_one_timeout_and_the_connection(settings):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) and never answers
    port = silent.getsockname()[1]
    try:
        hung = replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
        reads = direct(hung)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            reads.get(canonical(1), GENERATION)
        waited = time.monotonic() - started
        # The connect succeeds; the first command waits one read timeout (its HELLO or the GET), never more.
        assert waited < 2 * hung.redis_timeout_s + 1.0, waited
    finally:
        silent.close()


def test_nothing_listening_is_a_connection_error_at_once(settings):
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    reads = direct(replace(settings, redis_url=f"redis://127.0.0.1:{port}/0"))
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            reads.get(canonical(1), GENERATION)
        assert time.monotonic() - started < 1.0


def test_the_api_reads_directly_unless_told_not_to_or_caching(store: ProjectionStore, settings):
    generation = Generations(store).ensure()[0].live
    store.apply([added(7, 9_000_000_007)], generation)
    cases = {
        "default": (settings, DirectReads),
        "off": (replace(settings, api_direct_reads=False), ProjectionStore),
        "read cache": (replace(settings, api_read_cache_entries=100), TrackedReads),
    }
    for case, (chosen, kind) in cases.items():
        app = create_app(chosen)
        assert type(app.extensions["ums_finder"].reads) is kind, case
        response = app.test_client().get("/user/Direct%20User%20007")
        assert response.status_code == 200, (case, response.get_data(as_text=True))
        assert response.get_json()["phone"] == 9_000_000_007, case


def test_a_read_that_times_out_drops_its_connection_and_the_next_read_answers(store: ProjectionStore, settings):
    store.apply([added(2, 9_000_000_002)], GENERATION)
    reads = direct(replace(settings, redis_timeout_s=0.1))
    assert reads.get(canonical(2), GENERATION) is not None
    conn = reads._local.conn
    # Redis stops answering every client for 0.5 s, five read timeouts: its reply may still come
    # after the timeout, so the connection must not be read again.
    clients.redis_client(settings, Role.ADMIN).client_pause(500, all=True)
    with pytest.raises(redis.TimeoutError):
        reads.get(canonical(2), GENERATION)
    assert getattr(reads._local, "conn", None) is None, "a connection that timed out was kept"
    deadline = time.monotonic() + 5
    while True:
        try:
            held = reads.get(canonical(2), GENERATION)
            break
        except redis.TimeoutError:
            assert time.monotonic() < deadline, "reads did not come back after the pause"
    assert held is not None and held.user is not None and held.user.phone.value == 9_000_000_002
    assert reads._local.conn is not conn
