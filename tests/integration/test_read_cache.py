"""The API's read cache (adapters/tracking.py) on the real Redis: kept fresh by Redis's invalidations,
never older than a write whose invalidation had arrived, and off (not wrong) when tracking is refused
or its connection is lost."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

from adapters import clients, tracking
from adapters.generations import Generations
from adapters.settings import Settings
from adapters.store import ProjectionStore
from adapters.tracking import TrackedReads
from api import create_app
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.helpers import cache_connection_id, unique, wait_until

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
GENERATION = 1
# How long after a write's acknowledgement its invalidation may still be on its way to the reader.
# On loopback Redis writes both in the same pass of its event loop (microseconds apart); 2 ms only
# keeps the check from judging the scheduler. A cache that kept a replaced value would be seconds late.
DELIVERY_S = 0.002


def added(i: int, phone: int, offset: int) -> UserAdded:
    return UserAdded(User(Name(f"Cached User {i:03d}"), PhoneNumber(phone), SINCE), Version(1_000 + offset, 0, offset))


def tracked(settings: Settings, entries: int = 1000) -> TrackedReads:
    reads = clients.tracked_reads(replace(settings, api_read_cache_entries=entries))
    assert reads is not None
    return reads


def phone_of(reads: TrackedReads, i: int) -> int | None:
    held = reads.get(Name(f"Cached User {i:03d}").canonical, GENERATION)
    return held.user.phone.value if held is not None and held.user is not None else None


def test_a_hit_is_answered_from_memory_until_redis_says_the_user_changed(store: ProjectionStore, settings):
    store.apply([added(1, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    assert phone_of(reads, 1) == 9_000_000_001  # the first read connects (and opens the link)
    assert phone_of(reads, 1) == 9_000_000_001  # kept
    misses = reads.misses
    assert [phone_of(reads, 1) for _ in range(5)] == [9_000_000_001] * 5
    assert reads.misses == misses and reads.hits == 5, "answered from memory, not from Redis"

    store.apply([added(1, 9_000_000_002, 2)], GENERATION)  # another client's write
    wait_until(lambda: phone_of(reads, 1) == 9_000_000_002, 5, "the invalidation of user 1")
    assert reads.size() == 1

    store.unlink([store.key(GENERATION, Name("Cached User 001").canonical)])  # a deletion invalidates too
    wait_until(lambda: phone_of(reads, 1) is None, 5, "the invalidation of the deleted key")


def test_no_read_returns_a_value_older_than_a_write_acknowledged_before_it_began(store: ProjectionStore, settings):
    """A writer replaces 8 users' phones as fast as Redis takes them; 4 reader threads share one cache.
    Every answer must be at least the last phone acknowledged DELIVERY_S before the read began."""
    users, rounds = 8, 400
    store.apply([added(i, 9_000_000_000, 0) for i in range(users)], GENERATION)
    reads = tracked(settings)
    acked: list[list[tuple[float, int]]] = [[(0.0, 9_000_000_000)] for _ in range(users)]
    answers: list[tuple[int, float, int | None]] = []
    done = threading.Event()
    lock = threading.Lock()

    def write() -> None:
        for r in range(1, rounds + 1):
            for i in range(users):
                store.apply([added(i, 9_000_000_000 + r, r)], GENERATION)
                acked[i].append((time.monotonic(), 9_000_000_000 + r))
        done.set()

    def read(seed: int) -> None:
        mine = []
        while not done.is_set():
            for i in range(seed, seed + users):
                began = time.monotonic()
                mine.append((i % users, began, phone_of(reads, i % users)))
        with lock:
            answers.extend(mine)

    failures: list[BaseException] = []

    def guarded(target, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            target(*args)
        except BaseException as exc:  # a thread's exception would otherwise vanish
            failures.append(exc)
            done.set()

    threads = [threading.Thread(target=guarded, args=(write,))]
    threads += [threading.Thread(target=guarded, args=(read, s)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert done.is_set()

    stale = []
    for i, began, phone in answers:
        floor = max(p for at, p in acked[i] if at <= began - DELIVERY_S)
        if phone is None or phone < floor:
            stale.append((i, began, phone, floor))
    assert reads.hits > 0 and reads.misses > 0, "the run must have served from memory and from Redis"
    assert not stale, f"{len(stale)} of {len(answers)} reads were older than an acknowledged write: {stale[:5]}"
    final = [phone_of(reads, i) for i in range(users)]
    assert final == [9_000_000_000 + rounds] * users


def test_a_write_racing_a_read_never_leaves_the_replaced_value_in_memory(store: ProjectionStore, settings, monkeypatch):
    """Redis answers a GET, then a write replaces the value before the reader has kept it."""
    store.apply([added(6, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    assert phone_of(reads, 6) == 9_000_000_001  # connects, opens the link (not kept: nothing was tracked yet)
    assert reads.store is not None and reads.link is not None
    answer = reads.store.client.get

    def raced(key: str) -> bytes | None:
        raw = answer(key)
        store.apply([added(6, 9_000_000_002, 2)], GENERATION)
        wait_until(lambda: reads.link.conn.can_read(timeout=0), 5, "the write's invalidation at the worker")
        return raw

    monkeypatch.setattr(reads.store.client, "get", raced)
    assert phone_of(reads, 6) == 9_000_000_001  # what Redis answered before the write: right for this read
    monkeypatch.undo()
    assert phone_of(reads, 6) == 9_000_000_002, "the replaced value was kept"


def test_a_lost_invalidation_connection_empties_the_cache_and_reads_go_to_redis(
    store: ProjectionStore, settings, redis_client
):
    store.apply([added(2, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    assert phone_of(reads, 2) == 9_000_000_001
    assert reads.link is not None
    redis_client.client_kill_filter(_id=reads.link.ident)
    store.apply([added(2, 9_000_000_002, 2)], GENERATION)  # its invalidation has nowhere to go
    # The next read finds the link closed (at once on loopback; "eventually" only covers the FIN's way).
    wait_until(lambda: phone_of(reads, 2) == 9_000_000_002, 5, "the new phone after the link was killed")
    assert reads.resets == 1
    # Tracking comes back with a new connection, and with it answers from memory.
    wait_until(lambda: phone_of(reads, 2) == 9_000_000_002 and reads.hits > 0, 5, "hits again after the reset")
    store.apply([added(2, 9_000_000_003, 3)], GENERATION)
    wait_until(lambda: phone_of(reads, 2) == 9_000_000_003, 5, "the invalidation on the new connection")


def test_a_silent_invalidation_connection_is_dropped_within_its_trust(store: ProjectionStore, settings, monkeypatch):
    """A network that drops without a reset: nothing more arrives on the link, PINGs included."""
    monkeypatch.setattr(tracking, "PING_EVERY_S", 0.02)
    monkeypatch.setattr(tracking, "TRUST_FOR_S", 0.2)
    store.apply([added(3, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    wait_until(lambda: phone_of(reads, 3) == 9_000_000_001 and reads.hits > 0, 5, "answers from memory")
    assert reads.link is not None
    monkeypatch.setattr(reads.link.conn, "can_read", lambda timeout=0: False)  # the silence
    store.apply([added(3, 9_000_000_002, 2)], GENERATION)  # its invalidation is never read
    silenced = time.monotonic()
    wait_until(lambda: phone_of(reads, 3) == 9_000_000_002, 5, "the new phone once the link is not trusted")
    assert time.monotonic() - silenced < 0.2 + 2.0, "memory answered past its trust"
    # Distrust comes first (no PONG for 0.2 s), the reset once a PING has waited that long.
    wait_until(lambda: phone_of(reads, 3) == 9_000_000_002 and reads.resets == 1, 5, "the silent link dropped")


def test_a_connection_redis_closed_while_hits_were_answered_empties_the_cache(
    store: ProjectionStore, settings, redis_client
):
    """Redis forgets what a closed connection read (CLIENT KILL here; its `timeout`, client eviction):
    a write to those keys sends no invalidation, and hits answered the old value for good."""
    store.apply([added(5, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    wait_until(lambda: phone_of(reads, 5) == 9_000_000_001 and reads.hits > 0, 5, "answers from memory")
    redis_client.client_kill_filter(_id=cache_connection_id(reads))  # idle: only hits come after
    store.apply([added(5, 9_000_000_002, 2)], GENERATION)
    wait_until(lambda: phone_of(reads, 5) == 9_000_000_002, 5, "the new phone after its reader was closed")
    assert reads.resets == 1
    hits = reads.hits
    wait_until(lambda: phone_of(reads, 5) == 9_000_000_002 and reads.hits > hits, 5, "answers from memory again")
    store.apply([added(5, 9_000_000_003, 3)], GENERATION)  # tracked again through the new connection
    wait_until(lambda: phone_of(reads, 5) == 9_000_000_003, 5, "the invalidation after the reconnect")


def test_redis_closing_idle_clients_never_leaves_a_stale_answer(store: ProjectionStore, settings, redis_client):
    """Redis's `timeout` (0 by default, often 300 in production) closes a client idle that long; the
    link, subscribed, is exempt. The test sets 1 s on the shared Redis, for the two seconds or so
    this connection takes to be closed, then puts it back (the suite's other clients are idle then,
    and redis-py opens a closed one again at its next use)."""
    store.apply([added(6, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    wait_until(lambda: phone_of(reads, 6) == 9_000_000_001 and reads.hits > 0, 5, "answers from memory")
    reader = cache_connection_id(reads)
    before = redis_client.config_get("timeout")["timeout"]
    redis_client.config_set("timeout", 1)
    try:
        wait_until(lambda: reader not in {c["id"] for c in redis_client.client_list()}, 10, "Redis closing it")
    finally:
        redis_client.config_set("timeout", before)
    store.apply([added(6, 9_000_000_002, 2)], GENERATION)
    answers = [phone_of(reads, 6) for _ in range(40) if time.sleep(0.02) is None]
    assert set(answers) == {9_000_000_002}, answers
    assert reads.hits > 1, "memory answers again once the link is confirmed"


def test_a_connection_dropped_while_in_use_empties_the_cache_before_it_is_opened_again(
    store: ProjectionStore, settings, redis_client
):
    """redis-py drops a connection that failed under a request, then opens it again (round trips):
    memory must not answer in between what the dropped connection read."""
    store.apply([added(7, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    wait_until(lambda: phone_of(reads, 7) == 9_000_000_001 and reads.hits > 0, 5, "answers from memory")
    reader = cache_connection_id(reads)
    assert reads.store is not None
    pool = reads.store.client.connection_pool
    conn = pool.get_connection()  # taken by a request...
    redis_client.client_kill_filter(_id=reader)
    store.apply([added(7, 9_000_000_002, 2)], GENERATION)
    conn.disconnect()  # ...whose command failed: redis-py drops it, and will open it again
    try:
        wait_until(lambda: phone_of(reads, 7) == 9_000_000_002, 5, "the new phone while it is being opened")
    finally:
        pool.release(conn)
    assert reads.resets == 1


def test_a_redis_user_without_tracking_rights_reads_without_the_cache(store: ProjectionStore, settings, redis_client):
    store.apply([added(4, 9_000_000_001, 1)], GENERATION)
    user, password = unique("nocache"), unique("pw")
    redis_client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+get", "+ping"])
    try:
        reads = tracked(replace(settings, redis_api_user=user, redis_api_password=password))
        assert phone_of(reads, 4) == 9_000_000_001
        assert phone_of(reads, 4) == 9_000_000_001
        assert not reads.enabled and reads.hits == 0
    finally:
        redis_client.acl_deluser(user)


def test_a_read_during_which_the_link_lost_trust_leaves_nothing_behind(store: ProjectionStore, settings, monkeypatch):
    """Its mark (the token a racing invalidation removes) was left in memory for good: a small leak per key."""
    store.apply([added(8, 9_000_000_001, 1)], GENERATION)
    reads = tracked(settings)
    assert phone_of(reads, 8) == 9_000_000_001  # connects, opens the link
    assert reads.store is not None and reads.link is not None
    reads._values.clear()  # the next read is a miss, marked while the link is trusted
    answer = reads.store.client.get

    def lapsed(key: str) -> bytes | None:
        monkeypatch.setattr(reads.link, "trusted", lambda: False)  # as a PING gone unanswered meanwhile
        return answer(key)

    monkeypatch.setattr(reads.store.client, "get", lapsed)
    assert phone_of(reads, 8) == 9_000_000_001
    assert reads.misses == 2 and reads.size() == 0  # the answer is not kept, and
    assert not reads._pending  # neither is its mark


def test_the_cache_is_bounded(store: ProjectionStore, settings):
    store.apply([added(i, 9_000_000_000 + i, i) for i in range(10)], GENERATION)
    reads = tracked(settings, entries=4)
    assert [phone_of(reads, i) for i in range(10)] == [9_000_000_000 + i for i in range(10)]
    assert reads.size() == 4


def test_off_by_default_and_on_cluster(settings):
    assert clients.tracked_reads(settings) is None
    cluster = replace(settings, redis_url="redis+cluster://127.0.0.1:7000", api_read_cache_entries=10)
    assert clients.tracked_reads(cluster) is None


def test_the_api_answers_through_the_cache_and_counts_it(store: ProjectionStore, settings):
    live = Generations(store).ensure()[0].live
    client = create_app(replace(settings, api_read_cache_entries=100)).test_client()
    store.apply([added(5, 9_000_000_001, 1)], live)

    def phone() -> int:
        response = client.get("/user/Cached User 005")
        assert response.status_code == 200 and response.headers["X-Ums-Source"] == "projection"
        return int(response.get_json()["phone"])

    assert [phone() for _ in range(4)] == [9_000_000_001] * 4
    store.apply([added(5, 9_000_000_002, 2)], live)
    wait_until(lambda: phone() == 9_000_000_002, 5, "the API's answer after the write")
    metrics = client.get("/metrics", base_url=f"http://localhost:{settings.ops_bind.rpartition(':')[2]}").text
    counted = dict(re.findall(r'^ums_api_read_cache_total\{outcome="(\w+)"\} (\S+)$', metrics, re.M))
    assert float(counted["hit"]) >= 2 and float(counted["miss"]) >= 1, counted
