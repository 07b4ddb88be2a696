"""The consumer names a Redis policy that would delete the projection's keys (adapters/eviction.py).

These tests set `maxmemory-policy` on the shared Redis (or on every Cluster primary) and put back
what they found: the one setting they are about. Nothing here fills memory; the policy is read.
"""

from __future__ import annotations

import logging

import pytest
import redis

from adapters.eviction import check_eviction, eviction_policies
from tests.conftest import CLUSTER_TOO
from tests.helpers import wait_until

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster


def set_policy(client, policy: str) -> str:
    """Set `policy` everywhere; return the one found (every server of the rig starts alike)."""
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]  # a Cluster: one node's
    if isinstance(client, redis.RedisCluster):
        client.config_set("maxmemory-policy", policy, target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        client.config_set("maxmemory-policy", policy)
    return before


@pytest.fixture
def policy(redis_client):
    """Set a policy for one test; the server's own comes back afterwards."""
    found: list[str] = []

    def choose(name: str) -> None:
        found.append(set_policy(redis_client, name))

    yield choose
    if found:
        set_policy(redis_client, found[0])


def test_an_evicting_policy_is_named_when_the_consumer_starts(settings, policy, run_consumer, caplog):
    caplog.set_level(logging.INFO)
    policy("allkeys-lru")
    run_consumer()
    wait_until(lambda: "maxmemory-policy is allkeys-lru" in caplog.text, 30, "the consumer to name the policy")
    line = next(r for r in caplog.records if "maxmemory-policy is allkeys-lru" in r.getMessage())
    assert line.levelno == logging.ERROR and "generation pointer" in line.getMessage()


def test_a_volatile_policy_names_the_rebuilds_claim(redis_client, policy, caplog):
    policy("volatile-lru")
    assert check_eviction(redis_client) == ["volatile-lru"]
    assert "the rebuild's claim" in caplog.text


def test_noeviction_is_read_and_quiet(redis_client, policy, caplog):
    caplog.set_level(logging.INFO, logger="adapters.eviction")
    policy("noeviction")
    assert eviction_policies(redis_client) == {"noeviction"}  # read, not skipped
    assert check_eviction(redis_client) == []
    assert not [r for r in caplog.records if r.name == "adapters.eviction"]
