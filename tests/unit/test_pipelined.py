"""The pipelined fenced write: the same result as `ProjectionStore.apply`, every error raised, no dirty connection."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from adapters.pipelined import PipelinedWrite
from adapters.store import ProjectionStore
from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version, newest_per_user
from domain.model import from_epoch_ms


def added(name: str, phone: int, time_ms: int, offset: int = 0) -> UserAdded:
    return UserAdded(User(Name(name), PhoneNumber(phone), from_epoch_ms(time_ms)), Version(time_ms, 0, offset))


@pytest.fixture
def store():
    store = ProjectionStore(fakeredis.FakeRedis(), "unit")
    store.client.script_load(store._fenced_set.script)  # as after the first ordinary write
    return store


def test_chunks_are_fenced_like_one_apply_and_only_the_live_target_counts(store):
    store.apply([added("Alice Smith", 9_000_000_001, 5000)], 1)  # newer than the chunk's Alice
    write = PipelinedWrite(store, (1, 2))
    write.send(
        newest_per_user([added("Alice Smith", 9_000_000_002, 4000), added("Bob Jones-Lee", 9_000_000_003, 4000)])
    )
    write.send(newest_per_user([UserRemoved("Bob Jones-Lee", Version(4500, 1, 0))]))
    assert write.wait() == 2  # Bob's add, then his tombstone; Alice's older add fenced
    assert store.get("alice smith", 1).user.phone.value == 9_000_000_001
    assert store.get("alice smith", 2).user.phone.value == 9_000_000_002  # generation 2 had nothing
    assert store.get("bob jones-lee", 1).user is None and store.get("bob jones-lee", 2).user is None


def test_a_missing_script_raises_and_the_connection_is_not_reused(store):
    store.client.script_flush()  # a Redis restarted since the script was loaded
    write = PipelinedWrite(store, (1,))
    write.send(newest_per_user([added("Alice Smith", 9_000_000_001, 5000)]))
    with pytest.raises(redis.exceptions.NoScriptError):
        write.wait()
    pool = store.client.connection_pool
    assert not pool._in_use_connections  # released, and disconnected (replies may have been unread)
    assert store.apply([added("Alice Smith", 9_000_000_001, 5000)], 1) == 1  # the ordinary way still works


def test_nothing_sent_waits_for_nothing(store):
    assert PipelinedWrite(store, (1,)).wait() == 0
