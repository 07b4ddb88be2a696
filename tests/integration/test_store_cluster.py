"""Fenced writes on Redis Cluster (adapters/cluster_write.py): each master gets its calls; a lost script comes back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from redis.cluster import PRIMARY, ClusterNode

from adapters.pipelined import PipelinedWrite
from adapters.store import ProjectionStore
from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version, newest_per_user
from tests.helpers import free_port

pytestmark = pytest.mark.parametrize("redis_kind", ["cluster"], indirect=True)

USERS = 3_000  # over every master's slots, about one user per script call
SINCE = datetime(2024, 5, 1, tzinfo=UTC)


def added(count: int, time_ms: int, phone: int = 9_000_000_000) -> list[UserAdded]:
    return [
        UserAdded(User(Name(f"Cluster User {i:05d}"), PhoneNumber(phone + i), SINCE), Version(time_ms, 0, i))
        for i in range(count)
    ]


def masters(client: redis.RedisCluster) -> list[redis.Redis]:
    return [node.redis_connection for node in client.get_primaries()]


def test_a_batch_reaches_every_master_and_the_fence_holds(store: ProjectionStore):
    events = added(USERS, time_ms=2)
    assert store.apply(events, 1) == USERS
    assert len({store.client.get_node_from_key(store.key(1, e.key)).name for e in events}) == 3  # every master
    assert all(store.get(e.key, 1).user == e.user for e in events[::97])
    # Older versions change nothing; newer ones replace, tombstones included.
    assert store.apply(added(USERS, time_ms=1, phone=9_100_000_000), 1) == 0
    newer = [UserRemoved(e.key, Version(3, 0, i)) for i, e in enumerate(events[:100])]
    assert store.apply(newer, 1) == 100
    assert store.get(events[0].key, 1).user is None
    assert store.get(events[100].key, 1).user == events[100].user


def test_a_master_that_lost_its_scripts_gets_the_fence_again(store: ProjectionStore):
    store.apply(added(10, time_ms=1), 1)
    for master in masters(store.client):  # as after a restart or a failover to a replica
        master.script_flush()
    events = added(USERS, time_ms=2, phone=9_200_000_000)
    assert store.apply(events, 1) == USERS
    assert all(store.get(e.key, 1).user == e.user for e in events[::97])


def test_chunks_streamed_to_the_masters_are_fenced_and_only_the_live_target_counts(store: ProjectionStore):
    events = added(USERS, time_ms=2)
    store.apply(events[:10], 1)  # already there, same versions: the chunk changes nothing for them
    write = PipelinedWrite(store, (1, 2))
    write.send(newest_per_user(events[: USERS // 2]))
    write.send(newest_per_user(events[USERS // 2 :]))
    assert write.wait() == USERS - 10
    assert all(store.get(e.key, 1).user == e.user and store.get(e.key, 2).user == e.user for e in events[::97])


def test_a_master_gone_from_its_address_is_looked_up_again(store: ProjectionStore):
    """After a failover the client's slot map still names the old master. The raw stream bypasses
    redis-py's own refresh, so every retry of the batch went to the dead address: the consumer stalled."""
    events = added(USERS, time_ms=2, phone=9_300_000_000)
    manager = store.client.nodes_manager
    live = store.client.get_node_from_key(store.key(1, events[0].key))
    gone = ClusterNode("127.0.0.1", free_port(), server_type=PRIMARY)  # nothing listens there
    manager.create_redis_connections([gone])
    stale = [slot for slot, nodes in manager.slots_cache.items() if nodes[0].name == live.name]
    for slot in stale:
        manager.slots_cache[slot] = [gone]
    with pytest.raises(redis.ConnectionError):
        store.apply(events, 1)
    assert {manager.slots_cache[slot][0].name for slot in stale} == {live.name}  # asked the cluster again
    assert store.apply(events, 1) == USERS  # the retry reaches the master that holds the slots
    assert all(store.get(e.key, 1).user == e.user for e in events[::97])
